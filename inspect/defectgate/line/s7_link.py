"""The result block as a Siemens S7 data block (python-snap7 3.x, pure Python; extra [line]).
The block is `db` at byte `start` (64 bytes: words as S7 WORD/DWORD, big endian, block.py);
the station writes bytes 0..31 and reads 32..63 each cycle. On S7-1200/1500 the DB must be
non-optimized ("Optimized block access" off) and PUT/GET allowed for the CPU."""

from __future__ import annotations

from ..errors import require
from .block import BLOCK_WORDS, STATION_WORDS, s7_to_words, words_to_s7
from .transport import Reconnecting


class S7Transport(Reconnecting):
    def __init__(self, host: str, db: int, start: int = 0, rack: int = 0, slot: int = 1, port: int = 102,
                 reconnect_s: float = 1.0):
        self._snap7 = require("snap7", "line", "the S7 result block")
        super().__init__(reconnect_s)
        from snap7.error import S7Error

        self.errors = (OSError, RuntimeError, S7Error)
        self.host, self.db, self.start, self.rack, self.slot, self.port = host, int(db), int(start), rack, slot, port
        self.name = f"s7:{host}:{port}/DB{self.db}.DBB{self.start}"
        self._client = self._snap7.Client()

    def _open(self) -> bool:
        self._client.connect(self.host, self.rack, self.slot, self.port)
        return bool(self._client.get_connected())

    def _drop(self) -> None:
        try:
            self._client.disconnect()
        except self.errors:  # already gone
            pass

    def exchange(self, station_words: list[int]) -> list[int]:
        self.ensure()
        try:
            self._client.db_write(self.db, self.start, words_to_s7(list(station_words)))
            data = self._client.db_read(self.db, self.start + 2 * STATION_WORDS, 2 * (BLOCK_WORDS - STATION_WORDS))
        except self.errors as exc:
            raise self.failed(exc) from exc
        return s7_to_words(data)

    def close(self) -> None:
        self._drop()
