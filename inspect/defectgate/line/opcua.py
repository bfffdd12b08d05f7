"""OPC UA server following the basics of OPC 40100-1 (Machine Vision), with asyncua (extra [line]).

Address space, namespace `urn:defectgate:machinevision` (docs/line-integration.md has the tree):
    Objects/VisionSystem                      event notifier: ResultReadyEventType per part
      VisionSystemStateMachine/CurrentState   Preoperational | Initialized | Ready | Executing | Error
                              /CurrentStateNumber, methods Start(), Stop()
      ResultManagement/LastResult/...         ResultId, PartId, AcquisitionId, CreationTime, ResultState,
                                              DefectClasses, ModelVersion, TopConfidence
      Counters/...                            PartsInspected, PartsOK, PartsNG, PartsFailsafe, ...
      RecipeManagement/LoadedModel, method SelectModel(version) -> loaded version

Anonymous clients may browse, read and subscribe, never write or call; a user from
`users_file` may call the methods. The official OPC 40100 type nodeset is not loaded (it is not
shipped with asyncua): the browse names follow the spec so a client written against it finds
the same names, but the type definitions are plain BaseObjectType / BaseEventType subtypes.
Every call from the station (`publish`, `set_state`, `set_counters`) is non-blocking: it queues
a coroutine on the server's own event loop thread and returns."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import ConfigError, require
from ..users import UserFile
from .block import ResultCode, StationState
from .modbus_server import port_free

log = logging.getLogger(__name__)

NAMESPACE = "urn:defectgate:machinevision"
STATE_NAMES = {s: s.name.capitalize() for s in StationState}
MAX_QUEUED = 512  # results waiting for the server loop; beyond, they are counted as dropped


@dataclass
class ResultInfo:
    result_id: str
    part_id: int
    acquisition_id: int
    code: ResultCode
    defect_classes: list[str] = field(default_factory=list)
    model_version: str = ""
    top_confidence: float = 0.0
    created: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))


def _rules(ua: Any, permission_rules: Any):
    """Anonymous: everything a reader needs; Write and Call only for a logged-in user."""
    user_ids = {ua.NodeId(i) for i in permission_rules.USER_TYPES}
    guarded = {ua.NodeId(ua.ObjectIds.WriteRequest_Encoding_DefaultBinary),
               ua.NodeId(ua.ObjectIds.CallRequest_Encoding_DefaultBinary)}
    role = permission_rules.UserRole

    class Rules(permission_rules.PermissionRuleset):
        def check_validity(self, user, action_type_id, body):
            if action_type_id in guarded:
                return user is not None and user.role in (role.User, role.Admin)
            return action_type_id in user_ids

    return Rules()


class OpcUaVisionServer:
    def __init__(self, host: str = "0.0.0.0", port: int = 4840, users_file: str | None = None,
                 select_model: Callable[[str], str] | None = None, on_start: Callable[[], None] | None = None,
                 on_stop: Callable[[], None] | None = None, name: str = "defectgate"):
        require("asyncua", "line", "the OPC UA server")
        self.host, self.port, self.name = host, int(port), name
        self.users = UserFile(users_file) if users_file else None
        self.select_model, self.on_start, self.on_stop = select_model, on_start, on_stop
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._queued = 0
        self.dropped = 0
        self.published = 0
        self.state = StationState.PREOPERATIONAL
        self._nodes: dict[str, Any] = {}

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{'127.0.0.1' if self.host == '0.0.0.0' else self.host}:{self.port}/defectgate/"

    # ---- lifecycle ----
    def start(self) -> "OpcUaVisionServer":
        if self.port == 0:
            import socket

            with socket.socket() as s:
                s.bind((self.host, 0))
                self.port = s.getsockname()[1]
        elif not port_free(self.host, self.port):
            raise ConfigError(f"line.opcua.port: {self.host}:{self.port} is already in use (another OPC UA server "
                              "or station?); set line.opcua.port to a free port")
        threading.Thread(target=self._run, name=f"opcua:{self.port}", daemon=True).start()
        if not self._ready.wait(30.0) or self._error is not None:
            raise ConfigError(f"line.opcua: could not start the server on {self.host}:{self.port}: {self._error}")
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        except (OSError, RuntimeError, ValueError) as exc:  # asyncua's start failures derive from these
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        from asyncua import Server, ua
        from asyncua.crypto import permission_rules

        server = Server(user_manager=self._user_manager(permission_rules))
        await server.init()
        server.set_endpoint(f"opc.tcp://{self.host}:{self.port}/defectgate/")
        server.set_server_name(f"defectgate vision system {self.name}")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity],
                                   permission_ruleset=_rules(ua, permission_rules))
        tokens = [ua.AnonymousIdentityToken] + ([ua.UserNameIdentityToken] if self.users else [])
        server.set_identity_tokens(tokens)
        idx = await server.register_namespace(NAMESPACE)
        await self._build(server, idx, ua)
        self._stop = asyncio.Event()
        async with server:
            self._ready.set()
            await self._stop.wait()

    def _user_manager(self, permission_rules: Any):
        users, role, user_cls = self.users, permission_rules.UserRole, permission_rules.User

        class Manager:
            def get_user(self, iserver, username=None, password=None, certificate=None):
                if username is None:
                    return user_cls(role=role.Anonymous)
                if users is not None and users.check(username, password or ""):
                    return user_cls(role=role.User, name=username)
                return None  # wrong user or password: the session is refused

        return Manager()

    async def _build(self, server: Any, idx: int, ua: Any) -> None:
        V = ua.VariantType
        props = [("ResultId", V.String), ("PartId", V.String), ("AcquisitionId", V.UInt32),
                 ("CreationTime", V.DateTime), ("ResultState", V.Int32), ("DefectClasses", V.String),
                 ("ModelVersion", V.String), ("TopConfidence", V.Double)]
        etype = await server.create_custom_event_type(idx, "ResultReadyEventType", ua.ObjectIds.BaseEventType, props)
        vs = await server.nodes.objects.add_object(idx, "VisionSystem")
        await vs.set_event_notifier([ua.EventNotifier.SubscribeToEvents])
        self._gen = await server.get_event_generator(etype, vs)
        sm = await vs.add_object(idx, "VisionSystemStateMachine")
        n = self._nodes
        n["CurrentState"] = await sm.add_variable(idx, "CurrentState", STATE_NAMES[self.state])
        n["CurrentStateNumber"] = await sm.add_variable(idx, "CurrentStateNumber", int(self.state), V.UInt32)
        await sm.add_method(idx, "Start", self._method(self.on_start, StationState.EXECUTING), [], [])
        await sm.add_method(idx, "Stop", self._method(self.on_stop, StationState.READY), [], [])
        last = await (await vs.add_object(idx, "ResultManagement")).add_object(idx, "LastResult")
        for name, vtype in props:
            n[name] = await last.add_variable(idx, name, ua.get_default_value(vtype), vtype)
        await n["DefectClasses"].write_value(ua.Variant([], V.String))
        counters = await vs.add_object(idx, "Counters")
        for name in ("PartsInspected", "PartsOK", "PartsNG", "PartsFailsafe", "ResultsUndelivered",
                     "RejectsUnconfirmed", "ResultsDropped"):
            n[name] = await counters.add_variable(idx, name, 0, V.UInt64)
        recipe = await vs.add_object(idx, "RecipeManagement")
        n["LoadedModel"] = await recipe.add_variable(idx, "LoadedModel", "", V.String)
        await recipe.add_method(idx, "SelectModel", self._select, [V.String], [V.String])

    def _method(self, callback: Callable[[], None] | None, state: StationState):
        async def call(parent):
            if callback is not None:
                await self.loop.run_in_executor(None, callback)
            await self._set_state(state)
            return []

        return call

    async def _select(self, parent, version):
        from asyncua import ua

        if self.select_model is None:  # asyncua turns a raised error into BadUnexpectedError: return the code
            return ua.StatusCode(ua.StatusCodes.BadNotSupported)
        try:  # loading a model takes seconds: off the server loop
            loaded = await self.loop.run_in_executor(None, self.select_model, str(version.Value))
        except Exception as exc:  # the station's loader refused (unknown version, bad bundle)
            log.error("OPC UA SelectModel(%s) failed: %s", version.Value, exc)
            return ua.StatusCode(ua.StatusCodes.BadInvalidArgument)
        await self._nodes["LoadedModel"].write_value(str(loaded))
        return [ua.Variant(str(loaded), ua.VariantType.String)]

    # ---- the station's side (thread-safe, non-blocking) ----
    def _submit(self, coro) -> None:
        if self._queued >= MAX_QUEUED:
            coro.close()
            self.dropped += 1
            return
        self._queued += 1
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        fut.add_done_callback(self._done)

    def _done(self, fut) -> None:
        self._queued -= 1
        if not fut.cancelled() and fut.exception() is not None:
            log.error("OPC UA update failed: %s", fut.exception())

    def publish(self, result: ResultInfo) -> None:
        self._submit(self._publish(result))

    def set_state(self, state: StationState) -> None:
        self._submit(self._set_state(state))

    def set_counters(self, counters: dict[str, int]) -> None:
        self._submit(self._set_counters(dict(counters, ResultsDropped=self.dropped)))

    def set_model(self, version: str) -> None:
        self._submit(self._nodes["LoadedModel"].write_value(version))

    async def _publish(self, r: ResultInfo) -> None:
        from asyncua import ua

        V = ua.VariantType
        values = {"ResultId": (r.result_id, V.String), "PartId": (str(r.part_id), V.String),
                  "AcquisitionId": (r.acquisition_id, V.UInt32), "CreationTime": (r.created, V.DateTime),
                  "ResultState": (int(r.code), V.Int32), "DefectClasses": (list(r.defect_classes), V.String),
                  "ModelVersion": (r.model_version, V.String), "TopConfidence": (float(r.top_confidence), V.Double)}
        for name, (value, vtype) in values.items():
            await self._nodes[name].write_value(ua.Variant(value, vtype))
            setattr(self._gen.event, name, value)
        self._gen.event.Severity = 500 if r.code is not ResultCode.OK else 100
        await self._gen.trigger(message=f"part {r.part_id}: {r.code.name}")
        self.published += 1

    async def _set_state(self, state: StationState) -> None:
        self.state = state
        await self._nodes["CurrentState"].write_value(STATE_NAMES[state])
        from asyncua import ua

        await self._nodes["CurrentStateNumber"].write_value(ua.Variant(int(state), ua.VariantType.UInt32))

    async def _set_counters(self, counters: dict[str, int]) -> None:
        from asyncua import ua

        for name, value in counters.items():
            if name in self._nodes:
                await self._nodes[name].write_value(ua.Variant(int(value), ua.VariantType.UInt64))

    def close(self) -> None:
        if self._stop is not None and self.loop.is_running():
            self.loop.call_soon_threadsafe(self._stop.set)
        for _ in range(100):
            if not self.loop.is_running():
                break
            threading.Event().wait(0.05)
