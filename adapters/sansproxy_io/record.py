"""Record every turn of a core to a file, and replay a recording through a fresh core.

Theory of operation:

- The core is deterministic: the same configuration, the same seed and the same
  ``(now, wall, event)`` sequence give the same commands. So a run is fully described by a
  header (format version, sansproxy version, seed, configuration as TOML text) and one line
  per step the adapter took: an ``allocate_id`` call, an event with its two times (monotonic
  and wall clock), or a timer turn with them. Each line also carries the commands that turn
  returned, which is what a replay compares; the times are what it passes back to the core.
- The :class:`~sansproxy_io.runner.Runner` calls the recorder (``Runner(..., recorder=...)``),
  so every adapter that uses the shared runner records the same way. Nothing here imports an
  event loop; the adapter only calls :meth:`Recorder.flush` now and then and
  :meth:`Recorder.close` at the end.
- The replay makes the same calls in the same order, and asks for ``next_deadline()`` after
  every turn as the runner does: that query tidies the core's timer heap, which decides the
  order of timers that fall due together, so skipping it can reorder a timer turn's commands.
- Events are stored exactly (bytes as base64) because replay needs them; commands are stored
  as type and fields with ``Send.data`` reduced to its length and SHA-256, which detects any
  difference without doubling the file.
- A recording is a trace of what the core was told, so it holds the request and response
  bytes that crossed the proxy: treat the files as sensitive.

The file format is documented in ``docs/record-replay.md``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import random
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import MISSING, dataclass, fields, is_dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol, TextIO, cast, get_args

from sansproxy.commands import Command, Send
from sansproxy.config import (
    ProxyConfig,
    parse_config,
    quick_listen_address,
    quick_upstream_url,
)
from sansproxy.errors import ConfigError, SansproxyError
from sansproxy.events import ConfigReloaded, ConnId, DataReceived, Event, TlsInfo
from sansproxy.proxy import Proxy
from sansproxy_io.version import installed_version

__all__ = [
    "FLUSH_INTERVAL",
    "FORMAT",
    "FORMAT_VERSION",
    "RecordTarget",
    "Recorder",
    "RecordingError",
    "ReplayResult",
    "TurnRecorder",
    "config_entry",
    "config_from_entry",
    "decode_event",
    "encode_command",
    "encode_event",
    "open_recorder",
    "quick_config_toml",
    "replay",
    "replay_lines",
    "replay_main",
    "worker_record_path",
]

FORMAT: Final = "sansproxy-recording"
"""Value of the header's ``format`` key."""
FORMAT_VERSION: Final = 2
"""Version of the line format this module writes and reads (2: turns carry the wall time)."""
FLUSH_INTERVAL: Final = 1.0
"""Seconds between flushes of the recording while the proxy runs."""

_PREVIEW = 60
"""Bytes of data shown in a difference report."""
_BRIEF = 200
"""Characters of one command or event shown in a difference report."""

logger = logging.getLogger("sansproxy")

Json = Any
"""A value as :mod:`json` reads or writes it."""
Scalar = str | int | float | bool | None


class RecordingError(SansproxyError):
    """A recording cannot be read or replayed: not a recording, another format version, corrupt."""


# --------------------------------------------------------------------------------------------
# Targets and file names


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordTarget:
    """Where to record, and the configuration text the core's configuration came from.

    ``config_text`` is kept verbatim in the header so a replay re-parses it with
    :func:`~sansproxy.config.parse_config`; for ``--listen``/``--upstream`` use
    :func:`quick_config_toml`.
    """

    file: str | os.PathLike[str] | TextIO
    """A path (created or truncated) or an open text stream (flushed, never closed)."""
    config_text: str
    config_source: str = "<config>"
    worker: int | None = None
    """The worker number, when the proxy runs several worker processes."""


def worker_record_path(path: str | os.PathLike[str], worker: int, restart: int = 0) -> Path:
    """The file a worker records to when ``--record path`` is given with several workers.

    Each worker has its own core and seed, so each writes its own recording: worker ``n``
    (counted from 1) writes ``path.n``; the ``r``-th restart of that worker writes
    ``path.n.r`` so the recording of the run that died is kept.
    """
    if worker < 1 or restart < 0:
        raise ValueError(f"worker counts from 1, restart from 0: {worker}, {restart}")
    name = f"{os.fspath(path)}.{worker}"
    return Path(f"{name}.{restart}" if restart else name)


def quick_config_toml(listen: Sequence[str], upstreams: Sequence[str]) -> str:
    """TOML text that :func:`~sansproxy.config.parse_config` turns into ``quick_config(...)``.

    A recording of a ``--listen``/``--upstream`` run stores this text, so every recording
    replays through the same path.
    """
    if isinstance(listen, str) or isinstance(upstreams, str):
        raise TypeError("listen and upstreams must be sequences of strings, not a str")
    lines = ["# Generated from the command line (--listen / --upstream)."]
    for given in listen:
        address = _toml_string(quick_listen_address(given))  # ":8080" is "0.0.0.0:8080"
        lines += ["[[listeners]]", f"address = {address}", 'upstream = "default"']
        lines.append("")
    servers = ", ".join(_toml_string(quick_upstream_url(url)) for url in upstreams)
    lines += ["[upstreams.default]", f"servers = [{servers}]", ""]
    return "\n".join(lines)


def _toml_string(text: str) -> str:
    # A JSON string with ASCII escapes is a valid TOML basic string, except for DEL, which
    # TOML wants escaped too.
    return json.dumps(text).replace("\x7f", "\\u007f")


# --------------------------------------------------------------------------------------------
# Configuration entries: TOML text, its source name, and scalar overrides


def config_entry(config: ProxyConfig, text: str, source: str) -> dict[str, Json]:
    """The header's (or a reload's) ``config`` object for ``config``, parsed from ``text``.

    The command line may change scalar settings after parsing (``--access-log-format``,
    ``--loop``, ``--workers``); such differences are stored as ``overrides`` (dotted key ->
    value) so the replayed configuration equals the recorded one exactly.

    Raises:
        ConfigError: ``text`` does not parse.
        ValueError: ``text`` gives a configuration that differs from ``config`` in more than
            scalar settings.
    """
    overrides: dict[str, Scalar] = {}
    _diff(parse_config(text, source=source), config, "", overrides)
    entry: dict[str, Json] = {"source": source, "text": text}
    if overrides:
        entry["overrides"] = overrides
    return entry


def config_from_entry(entry: Json) -> ProxyConfig:
    """Rebuild the configuration a ``config`` object describes.

    Raises:
        ConfigError: The text no longer parses (the parser changed since the recording).
        RecordingError: The object is malformed.
    """
    if not isinstance(entry, dict):
        raise RecordingError("a configuration entry is not an object")
    text, source = entry.get("text"), entry.get("source")
    overrides = entry.get("overrides", {})
    if not isinstance(text, str) or not isinstance(source, str) or not isinstance(overrides, dict):
        raise RecordingError("a configuration entry needs 'text' and 'source' strings")
    config = parse_config(text, source=source)
    for path, value in overrides.items():
        config = cast(ProxyConfig, _replace_path(config, path.split("."), value, path))
    return config


_SCALARS = (str, int, float, bool, type(None))


def _diff(parsed: object, actual: object, path: str, out: dict[str, Scalar]) -> None:
    if parsed == actual:
        return
    if is_dataclass(parsed) and not isinstance(parsed, type) and type(parsed) is type(actual):
        for field in fields(parsed):
            if not field.compare:
                continue  # not a setting (ProxyConfig.source)
            name = f"{path}.{field.name}" if path else field.name
            _diff(getattr(parsed, field.name), getattr(actual, field.name), name, out)
        return
    if isinstance(parsed, _SCALARS) and isinstance(actual, _SCALARS):
        out[path] = actual
        return
    raise ValueError(
        f"{path}: the configuration text gives {parsed!r}, the running configuration has {actual!r}"
    )


def _replace_path(obj: object, parts: list[str], value: object, path: str) -> object:
    if not is_dataclass(obj) or isinstance(obj, type):
        raise RecordingError(f"override {path!r}: no such setting")
    names = {field.name for field in fields(obj)}
    if parts[0] not in names:
        raise RecordingError(f"override {path!r}: no such setting")
    current = getattr(obj, parts[0])
    if len(parts) > 1:
        value = _replace_path(current, parts[1:], value, path)
    elif not isinstance(current, _SCALARS):
        raise RecordingError(f"override {path!r}: not a scalar setting")
    return replace(obj, **{parts[0]: value})


# --------------------------------------------------------------------------------------------
# Encoding events and commands


def encode_event(event: Event, *, config: dict[str, Json] | None = None) -> dict[str, Json]:
    """An event as a JSON object: ``type`` plus its fields; bytes as base64.

    Args:
        event: The event.
        config: For :class:`~sansproxy.events.ConfigReloaded`, the configuration entry
            (see :meth:`Recorder.record_reload`); ``null`` is written without it.
    """
    encoded: dict[str, Json] = {"type": type(event).__name__}
    if isinstance(event, ConfigReloaded):
        encoded["config"] = config
        return encoded
    for field in fields(event):
        encoded[field.name] = _encode_value(getattr(event, field.name), hash_bytes=False)
    return encoded


def encode_command(command: Command) -> dict[str, Json]:
    """A command as a JSON object: ``type`` plus its fields.

    Bytes (``Send.data``) become ``{"len": N, "sha256": HEX}``: enough to detect any
    difference, at a fraction of the size.
    """
    encoded: dict[str, Json] = {"type": type(command).__name__}
    for field in fields(command):
        encoded[field.name] = _encode_value(getattr(command, field.name), hash_bytes=True)
    return encoded


def _encode_value(value: object, *, hash_bytes: bool) -> Json:
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, bytes):
        if hash_bytes:
            return {"len": len(value), "sha256": hashlib.sha256(value).hexdigest()}
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, tuple | list):
        return [_encode_value(item, hash_bytes=hash_bytes) for item in value]
    if is_dataclass(value) and not isinstance(value, type):
        return {
            field.name: _encode_value(getattr(value, field.name), hash_bytes=hash_bytes)
            for field in fields(value)
        }
    raise TypeError(f"cannot record a {type(value).__name__}: {value!r}")


def _as_int(value: Json) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise RecordingError(f"expected an integer, found {value!r}")
    return value


def _as_str(value: Json) -> str:
    if not isinstance(value, str):
        raise RecordingError(f"expected a string, found {value!r}")
    return value


def _as_optional_str(value: Json) -> str | None:
    return None if value is None else _as_str(value)


def _as_bool(value: Json) -> bool:
    if not isinstance(value, bool):
        raise RecordingError(f"expected true or false, found {value!r}")
    return value


def _as_optional_float(value: Json) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise RecordingError(f"expected a number, found {value!r}")
    return value


def _as_bytes(value: Json) -> bytes:
    try:
        return base64.b64decode(_as_str(value), validate=True)
    except binascii.Error:
        raise RecordingError(f"not base64: {value!r}") from None


def _as_address(value: Json) -> tuple[str, int]:
    if not isinstance(value, list) or len(value) != 2:
        raise RecordingError(f"expected [host, port], found {value!r}")
    return (_as_str(value[0]), _as_int(value[1]))


def _as_tls(value: Json) -> TlsInfo | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RecordingError(f"expected a TLS object, found {value!r}")
    return TlsInfo(
        **{field.name: _as_optional_str(value.get(field.name)) for field in fields(TlsInfo)}
    )


_FIELD_DECODERS: Final[dict[str, Callable[[Json], object]]] = {
    "ConnId": lambda value: ConnId(_as_int(value)),
    "int": _as_int,
    "bool": _as_bool,
    "str": _as_str,
    "bytes": _as_bytes,
    "tuple[str, int]": _as_address,
    "TlsInfo | None": _as_tls,
    "float | None": _as_optional_float,
}
"""Decoders by annotation text (``events.py`` uses postponed annotations)."""

_EVENT_TYPES: Final[dict[str, type[Any]]] = {cls.__name__: cls for cls in get_args(Event)}


def decode_event(obj: Json) -> Event:
    """The event an :func:`encode_event` object describes.

    Raises:
        RecordingError: The object is not a known event with valid fields.
        ConfigError: A ``ConfigReloaded`` configuration no longer parses.
    """
    if not isinstance(obj, dict):
        raise RecordingError(f"an event is not an object: {obj!r}")
    cls = _EVENT_TYPES.get(obj.get("type", ""))
    if cls is None:
        raise RecordingError(f"unknown event type {obj.get('type')!r}")
    if cls is ConfigReloaded:
        if obj.get("config") is None:
            raise RecordingError(
                "a ConfigReloaded event was recorded without its configuration text "
                "(the reload path must call Recorder.record_reload)"
            )
        return ConfigReloaded(config=config_from_entry(obj["config"]))
    values: dict[str, object] = {}
    for field in fields(cls):
        if field.name not in obj:
            if field.default is not MISSING:
                continue  # a field added later (ConnectionAccepted.not_tls): its default
            raise RecordingError(f"{cls.__name__} without {field.name!r}")
        decoder = _FIELD_DECODERS.get(str(field.type))
        if decoder is None:
            raise RecordingError(f"cannot decode {cls.__name__}.{field.name}: {field.type}")
        values[field.name] = decoder(obj[field.name])
    return cast(Event, cls(**values))


# --------------------------------------------------------------------------------------------
# Recording


class TurnRecorder(Protocol):
    """What a :class:`~sansproxy_io.runner.Runner` tells a recorder."""

    def allocated(self, conn: ConnId) -> None:
        """The adapter called ``allocate_id()`` and got ``conn``."""

    def turn(
        self,
        now: float,
        event: Event | None,
        commands: Sequence[Command],
        *,
        wall: float,
        raised: BaseException | None = None,
    ) -> None:
        """One turn: ``event`` (``None``: a timer turn) at ``now`` returned ``commands``.

        ``wall`` is the wall-clock time the core was given with ``now``; ``raised`` is the
        exception the core raised instead (the commands are then empty).
        """

    def record_reload(self, config: ProxyConfig, *, text: str, source: str) -> None:
        """``config``, about to be dispatched in ``ConfigReloaded``, was parsed from ``text``."""


class Recorder:
    """Writes a recording: the header at once, then one line per step.

    Writes are buffered; the file is flushed every :data:`FLUSH_INTERVAL` seconds of turn
    time, whenever the adapter calls :meth:`flush`, and by :meth:`close`. If writing fails
    (disk full), the error is logged once and recording stops; the proxy keeps serving.

    Args:
        stream: Where the lines go.
        config: The configuration the core was built with.
        config_text: The TOML text ``config`` was parsed from.
        config_source: The source name given to ``parse_config`` (usually the file name).
        seed: The seed of the core's ``random.Random``.
        worker: The worker number, if any (informational).
        owns_stream: Close ``stream`` in :meth:`close` (else it is only flushed).

    Raises:
        ConfigError: ``config_text`` does not parse.
        ValueError: ``config_text`` does not give ``config``.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        config: ProxyConfig,
        config_text: str,
        config_source: str,
        seed: int,
        worker: int | None = None,
        owns_stream: bool = False,
    ) -> None:
        self._stream: TextIO | None = stream
        self._owns_stream = owns_stream
        self._turns = 0
        self._last_flush: float | None = None
        self._reloads: dict[int, tuple[ProxyConfig, dict[str, Json]]] = {}
        header = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "sansproxy": installed_version(),
            "seed": seed,
            "worker": worker,
            "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "config": config_entry(config, config_text, config_source),
        }
        self._write(header)

    @property
    def turns(self) -> int:
        """Steps recorded so far (allocations, events and timer turns)."""
        return self._turns

    @property
    def closed(self) -> bool:
        """Whether recording has stopped (closed, or a write failed)."""
        return self._stream is None

    def allocated(self, conn: ConnId) -> None:
        """Record an ``allocate_id()`` call by the adapter and the id it returned."""
        self._step({"allocate": conn})

    def turn(
        self,
        now: float,
        event: Event | None,
        commands: Sequence[Command],
        *,
        wall: float,
        raised: BaseException | None = None,
    ) -> None:
        """Record one turn (see :class:`TurnRecorder`)."""
        if self._stream is None:
            return
        try:
            line: dict[str, Json] = {"t": now, "w": wall}
            if event is None:
                line["timeout"] = True
            else:
                entry = None
                if isinstance(event, ConfigReloaded):
                    entry = self._reload_entry(event.config)
                line["event"] = encode_event(event, config=entry)
            line["commands"] = [encode_command(command) for command in commands]
            if raised is not None:
                line["raised"] = _describe_exception(raised)
        except Exception:  # a recorder bug must not take the proxy down
            logger.exception("recording stopped: cannot encode a turn")
            self._stop()
            return
        self._step(line)
        if self._last_flush is None:
            self._last_flush = now
        elif now - self._last_flush >= FLUSH_INTERVAL:
            self._last_flush = now
            self.flush()

    def record_reload(self, config: ProxyConfig, *, text: str, source: str) -> None:
        """Say which TOML text ``config`` came from, before dispatching ``ConfigReloaded``.

        The reload path calls this with the new configuration object, then dispatches
        ``ConfigReloaded(config=config)`` (the same object); the recorder stores ``text``
        with that event, so a replay re-parses it.

        Never raises: if ``text`` does not parse or does not give ``config`` (beyond scalar
        overrides), the problem is logged and the reload is recorded without its text, where
        a replay stops with a clear message.
        """
        try:
            entry = config_entry(config, text, source)
        except (ConfigError, ValueError) as error:
            logger.error("recording: the reloaded configuration does not match its text: %s", error)
            return
        self._reloads[id(config)] = (config, entry)

    def flush(self) -> None:
        """Push buffered lines to the file."""
        if self._stream is None:
            return
        try:
            self._stream.flush()
        except OSError as error:
            self._fail(error)

    def close(self) -> None:
        """Write the end line, flush, and close the file (if owned). Idempotent."""
        if self._stream is None:
            return
        self._write({"end": {"turns": self._turns}})
        self._stop()

    def _reload_entry(self, config: ProxyConfig) -> dict[str, Json] | None:
        found = self._reloads.pop(id(config), None)
        if found is not None and found[0] is config:
            return found[1]
        logger.warning(
            "recording: a configuration reload without its text (Recorder.record_reload was "
            "not called); the replay will stop there"
        )
        return None

    def _step(self, line: dict[str, Json]) -> None:
        if self._stream is not None:
            self._turns += 1
            self._write(line)

    def _write(self, obj: dict[str, Json]) -> None:
        if self._stream is None:
            return
        try:
            self._stream.write(json.dumps(obj, separators=(",", ":")) + "\n")
        except OSError as error:
            self._fail(error)

    def _fail(self, error: OSError) -> None:
        logger.error("recording stopped: cannot write: %s", error.strerror or error)
        self._stop()

    def _stop(self) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            return
        try:
            stream.flush()
            if self._owns_stream:
                stream.close()
        except OSError as error:
            logger.error("recording: cannot flush or close: %s", error.strerror or error)


def open_recorder(target: RecordTarget, *, config: ProxyConfig, seed: int) -> Recorder:
    """Open ``target`` and write the header: what an adapter calls for ``record=target``.

    Raises:
        ConfigError: The file cannot be created (one line naming it), or the configuration
            text does not parse.
        ValueError: The configuration text does not give ``config``.
    """
    if isinstance(target.file, str | os.PathLike):
        name = os.fspath(target.file)
        # Validate the header first so a bad call does not leave an empty file behind.
        config_entry(config, target.config_text, target.config_source)
        try:
            stream: TextIO = open(name, "w", encoding="utf-8", newline="\n")  # noqa: SIM115
        except OSError as error:
            raise ConfigError(name, "", f"cannot write the recording: {error.strerror}") from None
        owns = True
    else:
        stream, owns = target.file, False
    try:
        return Recorder(
            stream,
            config=config,
            config_text=target.config_text,
            config_source=target.config_source,
            seed=seed,
            worker=target.worker,
            owns_stream=owns,
        )
    except BaseException:
        if owns:
            stream.close()
        raise


def _describe_exception(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


# --------------------------------------------------------------------------------------------
# Replaying


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayResult:
    """The outcome of :func:`replay`."""

    identical: bool
    """Every replayed turn returned exactly the recorded commands."""
    turns: int
    """Steps replayed (allocations, events, timer turns), up to the first difference."""
    first_difference: str | None = None
    """Where and how the replay first differed (multi-line), ``None`` when identical."""
    truncated: bool = False
    """The last line was cut off (the process was killed mid-write) and ignored."""
    complete: bool = True
    """The recording has its end line (the proxy shut down cleanly).

    ``truncated`` and ``complete`` are only checked when the replay reads the whole file,
    so both keep their defaults after a difference.
    """
    notes: tuple[str, ...] = ()
    """Other remarks, such as a different sansproxy version."""

    def report(self) -> str:
        """What ``sansproxy replay`` prints: a summary line, then details and notes."""
        verdict = "identical" if self.identical else "different"
        lines = [f"replayed {self.turns} turns: {verdict}"]
        if self.first_difference is not None:
            lines.append(self.first_difference)
        if self.truncated:
            lines.append("note: the last line was cut off mid-write and was ignored")
        elif not self.complete:
            lines.append("note: the recording has no end line (the proxy did not shut down)")
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)


def replay(path: str | os.PathLike[str]) -> ReplayResult:
    """Replay the recording at ``path`` through a fresh core and compare every turn.

    Raises:
        RecordingError: The file cannot be read, is not a recording, has another format
            version, or is corrupt before its last line, or a recorded configuration no
            longer parses.
    """
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8", newline="") as stream:
            return replay_lines(stream, name=name)
    except OSError as error:
        raise RecordingError(f"{name}: cannot read: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise RecordingError(f"{name}: not a recording (not UTF-8 text)") from None


def replay_main(
    paths: Sequence[str], *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """``sansproxy replay FILE...``: replay each recording and print its report.

    With several files (one per worker) each report is prefixed by its file name.

    Returns:
        0 when every recording replays identically, 1 when one differs, 2 when one cannot
        be read or replayed (the message goes to ``err``).
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    status = 0
    for path in paths:
        try:
            result = replay(path)
        except RecordingError as error:
            print(f"sansproxy replay: {error}", file=err)
            status = 2
            continue
        report = result.report()
        print(f"{path}: {report}" if len(paths) > 1 else report, file=out)
        if not result.identical:
            status = max(status, 1)
    return status


def replay_lines(lines: Iterable[str], *, name: str = "<recording>") -> ReplayResult:
    """Replay a recording given as its lines, each ending in a newline (as a file iterates).

    Raises:
        RecordingError: See :func:`replay`.
    """
    try:
        return _replay_records(_Records(lines, name), name)
    except ConfigError as error:
        raise RecordingError(
            f"{name}: a recorded configuration no longer parses: {error}"
        ) from None


def _replay_records(records: _Records, name: str) -> ReplayResult:
    header = records.header()
    proxy = Proxy(config_from_entry(header["config"]), rng=random.Random(header["seed"]))
    notes: list[str] = []
    recorded_version = header.get("sansproxy")
    if recorded_version != installed_version():
        notes.append(
            f"recorded with sansproxy {recorded_version}, replayed with {installed_version()}"
        )
    turns = 0
    ended: int | None = None
    for line_number, record in records:
        if ended is not None:
            raise RecordingError(f"{name}: line {line_number}: a line after the end line")
        if "end" in record:
            end = record["end"]
            count = end.get("turns") if isinstance(end, dict) else None
            if not isinstance(count, int):
                raise RecordingError(f"{name}: line {line_number}: a malformed end line")
            ended = count
            continue
        turns += 1
        difference = _replay_step(proxy, record, turns, line_number, name)
        if difference is not None:
            # The rest of the file is not read: whether it ends cleanly is not known.
            return ReplayResult(
                identical=False, turns=turns, first_difference=difference, notes=tuple(notes)
            )
    if ended is not None and ended != turns:
        raise RecordingError(f"{name}: the end line counts {ended} turns, the file has {turns}")
    return ReplayResult(
        identical=True,
        turns=turns,
        truncated=records.truncated,
        complete=ended is not None,
        notes=tuple(notes),
    )


class _Records:
    """The JSON objects of a recording's lines, tolerating a cut-off last line."""

    def __init__(self, lines: Iterable[str], name: str) -> None:
        self._lines = iter(lines)
        self._name = name
        self._number = 0
        self.truncated = False

    def header(self) -> dict[str, Json]:
        first = next(self._lines, "")
        self._number = 1
        if not first.endswith("\n"):
            raise RecordingError(f"{self._name}: not a recording (no complete header line)")
        try:
            header = json.loads(first)
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise RecordingError(f"{self._name}: not a sansproxy recording")
        if header.get("version") != FORMAT_VERSION:
            raise RecordingError(_unsupported_version(self._name, header))
        if not isinstance(header.get("seed"), int) or "config" not in header:
            raise RecordingError(f"{self._name}: the header lacks the seed or the configuration")
        return header

    def __iter__(self) -> Iterator[tuple[int, dict[str, Json]]]:
        for line in self._lines:
            self._number += 1
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if not isinstance(record, dict):
                if not line.endswith("\n") and next(self._lines, None) is None:
                    self.truncated = True
                    return
                raise RecordingError(f"{self._name}: line {self._number}: not a JSON object")
            yield self._number, record


def _unsupported_version(name: str, header: dict[str, Json]) -> str:
    """The one-line refusal of a recording in another format version, and what to do."""
    found = header.get("version")
    message = (
        f"{name}: recording format version {found!r} cannot be replayed: this sansproxy "
        f"replays version {FORMAT_VERSION} only"
    )
    if not isinstance(found, int) or isinstance(found, bool):
        return message
    advice: list[str] = []
    writer = header.get("sansproxy")
    if isinstance(writer, str) and writer not in ("unknown", installed_version()):
        advice.append(f"replay it with sansproxy {writer}, which recorded it")
    if found < FORMAT_VERSION:
        advice.append("record the run again")
    return f"{message} ({', or '.join(advice)})" if advice else message


def _replay_step(
    proxy: Proxy, record: dict[str, Json], turn: int, line_number: int, name: str
) -> str | None:
    """Replay one step; return a description of the difference, or ``None``."""
    where = f"turn {turn} (line {line_number})"
    if "allocate" in record:
        expected_id = _as_int(record["allocate"])
        actual_id = proxy.allocate_id()
        if actual_id == expected_id:
            return None
        return f"{where}: allocate_id() returned {actual_id}, the recording has {expected_id}"
    now = record.get("t")
    if not isinstance(now, int | float) or isinstance(now, bool):
        raise RecordingError(f"{name}: line {line_number}: no time 't'")
    wall = record.get("w")
    if not isinstance(wall, int | float) or isinstance(wall, bool):
        raise RecordingError(f"{name}: line {line_number}: no wall time 'w'")
    expected = record.get("commands")
    if not isinstance(expected, list):
        raise RecordingError(f"{name}: line {line_number}: no 'commands' list")
    event: Event | None = None
    try:
        if record.get("timeout") is True:
            what = "timer turn"
        elif "event" in record:
            event = decode_event(record["event"])
            what = _describe_event(event)
        else:
            raise RecordingError("neither an event, a timer turn nor an allocation")
    except RecordingError as error:
        raise RecordingError(f"{name}: line {line_number}: {error}") from None
    raised: str | None = None
    commands: list[Command] = []
    try:
        if event is None:
            commands = proxy.handle_timeout(now, wall=wall)
        else:
            commands = proxy.handle(event, now, wall=wall)
    except Exception as error:  # noqa: BLE001 - the recording may hold a core failure too
        raised = _describe_exception(error)
    # The Runner asks for the next deadline after every turn, and that call tidies the core's
    # timer heap, which decides the order of timers due together: ask exactly as it does.
    proxy.next_deadline()
    actual = [encode_command(command) for command in commands]
    # Compare as JSON would store them (tuples are lists there).
    actual = json.loads(json.dumps(actual))
    expected_raised = record.get("raised")
    if actual == expected and raised == expected_raised:
        return None
    lines = [f"{where} at t={now!r}: {what}"]
    if raised != expected_raised:
        lines.append(f"  expected: {_raised_text(expected_raised)}")
        lines.append(f"  actual:   {_raised_text(raised)}")
        return "\n".join(lines)
    index = next(
        (i for i, (e, a) in enumerate(zip(expected, actual, strict=False)) if e != a),
        min(len(expected), len(actual)),
    )
    lines.append(
        f"  command {index + 1} differs (recorded {len(expected)} commands, "
        f"replay returned {len(actual)})"
    )
    lines.append(f"  expected: {_brief(expected[index]) if index < len(expected) else '(none)'}")
    actual_text = _brief(actual[index]) if index < len(actual) else "(none)"
    if index < len(commands) and isinstance(commands[index], Send):
        actual_text += f" {_preview(cast(Send, commands[index]).data)}"
    lines.append(f"  actual:   {actual_text}")
    return "\n".join(lines)


def _raised_text(raised: Json) -> str:
    return "the core returned normally" if raised is None else f"the core raised {raised}"


def _describe_event(event: Event) -> str:
    if isinstance(event, DataReceived):
        return f"DataReceived(conn={event.conn}, {len(event.data)} bytes: {_preview(event.data)})"
    if isinstance(event, ConfigReloaded):
        return "ConfigReloaded(...)"
    return _clip(repr(event))


def _brief(command: Json) -> str:
    if not isinstance(command, dict):
        return _clip(repr(command))
    parts = []
    for key, value in command.items():
        if key == "type":
            continue
        if isinstance(value, dict) and set(value) == {"len", "sha256"}:
            parts.append(f"{key}=<{value['len']} bytes, sha256 {str(value['sha256'])[:12]}>")
        else:
            parts.append(f"{key}={json.dumps(value)}")
    return _clip(f"{command.get('type')}({', '.join(parts)})")


def _preview(data: bytes) -> str:
    text = repr(data[:_PREVIEW])
    return text + "..." if len(data) > _PREVIEW else text


def _clip(text: str) -> str:
    return text if len(text) <= _BRIEF else text[: _BRIEF - 3] + "..."
