"""The station's bond to the line (docs/line-integration.md): the result block and its handshake
with the PLC (`plc_tracks`), transports for the block (Modbus TCP client or server, S7 data
block), an OPC UA Machine Vision server, line inputs (reject confirm, bin full, air low, line
running) with the line-stop output, and the reject-timing process (`station_fires`). `LineLink`
(facade.py) is what the station calls. Protocol libraries import lazily."""
