"""BagIt 1.0 evidence packages: a streaming writer that hashes as it writes, row formats, and verification.

Nothing here touches the ORM: the export service gathers rows from the database and hands them over as
plain dicts, so the package format can be written, read and tested on its own.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, unquote
from xml.sax.saxutils import escape

from verification import ledger

CHUNK_BYTES = 1024 * 1024
BAGIT_TXT = "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"
MANIFEST = "manifest-sha256.txt"
TAGMANIFEST = "tagmanifest-sha256.txt"
LEDGER_PATH = "data/provenance/ledger.jsonl"

CONSENSUS_COLUMNS = [
    "task_id",
    "task_key",
    "kind",
    "status",
    "label",
    "confidence",
    "agreement",
    "n_answers",
    "entropy",
    "method",
    "reviewer_decision",
    "reviewer_note",
    "decided_at",
    "west",
    "south",
    "east",
    "north",
    "start_seconds",
    "end_seconds",
    "source_sha256",
    "after_source_sha256",
    "media",
]
ANSWER_COLUMNS = ["answer_id", "task_id", "volunteer", "label", "answer", "duration_ms", "created_at"]


class PackageError(ValueError):
    """The package cannot be written (bad target, nothing to export): the message is shown as it is."""


# ---------------------------------------------------------------- writing


class HashingWriter:
    """A binary file that hashes what is written to it, so manifests never re-read the payload."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, data: str | bytes) -> int:
        payload = data.encode("utf-8") if isinstance(data, str) else data
        self._stream.write(payload)
        self._digest.update(payload)
        self.size += len(payload)
        return len(data)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


@dataclass
class PackageWriter:
    """Writes a bag into ``root`` (a fresh partial directory); ``finish`` adds the tag files."""

    root: Path
    manifest: list[tuple[str, str, int]] = field(default_factory=list)
    _inode_digests: dict[tuple[int, int, int, int], str] = field(default_factory=dict)
    _made_dirs: set[Path] = field(default_factory=set)

    def __post_init__(self) -> None:
        (self.root / "data").mkdir(parents=True, exist_ok=False)

    def _target(self, relpath: str) -> Path:
        if relpath.startswith("/") or ".." in Path(relpath).parts:
            raise PackageError(f"unsafe path in package: {relpath}")
        target = self.root / "data" / relpath
        if target.parent not in self._made_dirs:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._made_dirs.add(target.parent)
        return target

    @contextlib.contextmanager
    def open(self, relpath: str) -> Iterator[HashingWriter]:
        target = self._target(relpath)
        with open(target, "wb", buffering=CHUNK_BYTES) as stream:
            writer = HashingWriter(stream)
            yield writer
        self.manifest.append((f"data/{relpath}", writer.hexdigest(), writer.size))

    def write_bytes(self, relpath: str, payload: bytes) -> None:
        with self.open(relpath) as out:
            out.write(payload)

    def add_file(self, relpath: str, source: str | Path) -> None:
        """Hard-link a local file into the payload when possible (media is never modified), else copy it."""
        target = self._target(relpath)
        try:
            os.link(source, target)
        except OSError:
            with open(source, "rb") as src, self.open(relpath) as out:
                shutil.copyfileobj(src, out, CHUNK_BYTES)  # type: ignore[misc]
            return
        stat = os.stat(target)
        key = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
        digest = self._inode_digests.get(key)
        if digest is None:
            with open(target, "rb") as stream:
                digest = _sha256_stream(stream)
            self._inode_digests[key] = digest
        self.manifest.append((f"data/{relpath}", digest, stat.st_size))

    def add_stream(self, relpath: str, stream: IO[bytes]) -> None:
        with self.open(relpath) as out:
            shutil.copyfileobj(stream, out, CHUNK_BYTES)  # type: ignore[misc]

    @property
    def payload_bytes(self) -> int:
        return sum(size for _, _, size in self.manifest)

    def finish(self, bag_info: Mapping[str, str]) -> str:
        """Write bagit.txt, bag-info.txt and both manifests; returns the SHA-256 of manifest-sha256.txt."""
        manifest_text = "".join(f"{digest}  {_encode_path(path)}\n" for path, digest, _ in self.manifest)
        info = {
            **bag_info,
            "Payload-Oxum": f"{self.payload_bytes}.{len(self.manifest)}",
            "Bag-Software-Agent": bag_info.get("Bag-Software-Agent", "corroborate"),
        }
        for key, value in info.items():
            if "\n" in value or "\r" in value or ":" in key:
                raise PackageError(f"bag-info field {key!r} must be a single line")
        tag_files = {
            "bagit.txt": BAGIT_TXT.encode(),
            "bag-info.txt": "".join(f"{k}: {v}\n" for k, v in info.items()).encode("utf-8"),
            MANIFEST: manifest_text.encode("utf-8"),
        }
        for name, payload in tag_files.items():
            (self.root / name).write_bytes(payload)
        (self.root / TAGMANIFEST).write_text(
            "".join(f"{hashlib.sha256(p).hexdigest()}  {name}\n" for name, p in tag_files.items()),
            encoding="utf-8",
        )
        return hashlib.sha256(tag_files[MANIFEST]).hexdigest()

    @property
    def files(self) -> int:
        return len(self.manifest) + 4


def _encode_path(path: str) -> str:
    # RFC 8493 2.1.3: CR, LF and % are percent-encoded in manifest paths.
    return path.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _sha256_stream(stream: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := stream.read(CHUNK_BYTES):
        digest.update(chunk)
    return digest.hexdigest()


def partial_dir(out: Path) -> Path:
    """Where a package is written before it is moved to ``out`` in one rename."""
    return out.with_name(f"{out.name}.partial-{secrets.token_hex(6)}")


def publish(partial: Path, out: Path) -> None:
    if out.exists():
        raise PackageError(f"{out} already exists")
    os.replace(partial, out)


# ---------------------------------------------------------------- pseudonyms


def new_pseudonym_key() -> bytes:
    """A random key for one package; it is never stored, so pseudonyms cannot be linked across packages."""
    return secrets.token_bytes(32)


def pseudonym(key: bytes, volunteer_id: int | str) -> str:
    return "P-" + hmac.new(key, str(volunteer_id).encode(), hashlib.sha256).hexdigest()[:16]


# ---------------------------------------------------------------- rows


def consensus_row(task: Mapping[str, Any]) -> list[Any]:
    bbox = task.get("bbox") or [None, None, None, None]
    return [
        task["id"],
        task["key"],
        task["kind"],
        task["status"],
        task.get("label") or "",
        _round(task.get("confidence")),
        _round(task.get("agreement")),
        task.get("n_answers") or 0,
        _round(task.get("entropy")),
        task.get("method") or "",
        task.get("decision_label") or "",
        task.get("decision_note") or "",
        task.get("decided_at") or "",
        *bbox,
        _blank(task.get("start_seconds")),
        _blank(task.get("end_seconds")),
        task.get("source_sha256") or "",
        task.get("after_source_sha256") or "",
        " ".join(task.get("media_paths") or []),
    ]


def answer_row(answer: Mapping[str, Any], key: bytes) -> list[Any]:
    return [
        answer["id"],
        answer["task_id"],
        pseudonym(key, answer["volunteer_id"]),
        answer["label"],
        json.dumps(answer["answer"], sort_keys=True, ensure_ascii=False),
        _blank(answer.get("duration_ms")),
        _isoformat(answer.get("created_at")),
    ]


def _round(value: Any) -> Any:
    return "" if value is None else round(float(value), 4)


def _blank(value: Any) -> Any:
    return "" if value is None else value


def _isoformat(value: Any) -> str:
    return value.isoformat() if isinstance(value, dt.datetime | dt.date) else str(value or "")


def task_properties(task: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "task_id": task["id"],
        "task_key": task["key"],
        "kind": task["kind"],
        "status": task["status"],
        "label": task.get("label") or None,
        "confidence": _none_or_round(task.get("confidence")),
        "agreement": _none_or_round(task.get("agreement")),
        "n_answers": task.get("n_answers") or 0,
        "reviewer_decision": task.get("decision_label") or None,
        "reviewer_note": task.get("decision_note") or None,
        "source_sha256": task.get("source_sha256"),
        "after_source_sha256": task.get("after_source_sha256"),
        "start_seconds": task.get("start_seconds"),
        "end_seconds": task.get("end_seconds"),
        "media": task.get("media_paths") or [],
    }


def _none_or_round(value: Any) -> float | None:
    return None if value is None else round(float(value), 4)


def task_feature(task: Mapping[str, Any]) -> dict[str, Any]:
    """An RFC 7946 Feature: the task's footprint polygon (EPSG:4326), or null geometry for video segments."""
    return {
        "type": "Feature",
        "id": f"task-{task['id']}",
        "geometry": _polygon(task.get("footprint"), task.get("bbox")),
        "properties": task_properties(task),
    }


def _polygon(footprint: Any, bbox: Any) -> dict[str, Any] | None:
    if isinstance(footprint, Mapping) and footprint.get("type") == "Polygon":
        return {"type": "Polygon", "coordinates": footprint["coordinates"]}
    if bbox and len(bbox) == 4:
        w, s, e, n = (float(v) for v in bbox)
        # RFC 7946 3.1.6: exterior rings are counterclockwise.
        return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
    return None


def point_feature(point: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": f"point-{point['task_id']}-{point['index']}",
        "geometry": {"type": "Point", "coordinates": [round(point["lon"], 7), round(point["lat"], 7)]},
        "properties": {
            "kind": "consensus_point",
            "task_id": point["task_id"],
            "question": point["question"],
            "n_volunteers": point["n_volunteers"],
            "spread_px": round(point["spread_px"], 2),
        },
    }


class GeoJsonStream:
    """Writes a FeatureCollection one Feature at a time."""

    def __init__(self, out: HashingWriter) -> None:
        self._out = out
        self._first = True
        out.write('{"type":"FeatureCollection","features":[\n')

    def add(self, feature: Mapping[str, Any]) -> None:
        self._out.write(("" if self._first else ",\n") + json.dumps(feature, ensure_ascii=False))
        self._first = False

    def close(self) -> None:
        self._out.write("\n]}\n")


LABEL_COLOURS = ["#d62728", "#2ca02c", "#1f77b4", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
# Labels that mean the same in every campaign keep their colour, in the workspace map and in packages.
SEMANTIC_COLOURS = {"destroyed": "#d62728", "damaged": "#ff7f0e", "intact": "#2ca02c", "unsure": "#7f7f7f"}
_PALETTE = [c for c in LABEL_COLOURS if c not in SEMANTIC_COLOURS.values()]
NO_LABEL_COLOUR = "#bdbdbd"


def label_colour(label: str, labels: list[str]) -> str:
    """The colour of a label; `labels` collects the other labels in the order met, for stable colours."""
    if not label:
        return NO_LABEL_COLOUR
    if label in SEMANTIC_COLOURS:
        return SEMANTIC_COLOURS[label]
    if label not in labels:
        labels.append(label)
    return _PALETTE[labels.index(label) % len(_PALETTE)]


def _kml_colour(hex_rgb: str, alpha: str = "99") -> str:
    r, g, b = hex_rgb[1:3], hex_rgb[3:5], hex_rgb[5:7]
    return f"{alpha}{b}{g}{r}"  # KML is aabbggrr


class KmlStream:
    """Writes a KML 2.2 Document one Placemark at a time, with a style per label."""

    def __init__(self, out: HashingWriter, *, name: str, labels: list[str]) -> None:
        self._out = out
        out.write(
            '<?xml version="1.0" encoding="UTF-8"?>\n<kml xmlns="http://www.opengis.net/kml/2.2">\n'
            f"<Document><name>{escape(name)}</name>\n"
        )
        self._labels = list(labels)
        for label in [*labels, ""]:
            colour = label_colour(label, self._labels)
            out.write(
                f'<Style id="{_style_id(label)}"><LineStyle><color>{_kml_colour(colour, "ff")}</color>'
                f"<width>1</width></LineStyle><PolyStyle><color>{_kml_colour(colour)}</color></PolyStyle>"
                "</Style>\n"
            )

    def add_task(self, task: Mapping[str, Any]) -> None:
        geometry = _polygon(task.get("footprint"), task.get("bbox"))
        props = task_properties(task)
        label = str(props["label"] or "")
        data = "".join(
            f'<Data name="{escape(k)}"><value>{escape(_kml_value(v))}</value></Data>'
            for k, v in props.items()
        )
        shape = ""
        if geometry is not None:
            rings = geometry["coordinates"]
            shape = "<Polygon><outerBoundaryIs><LinearRing><coordinates>" + _kml_coords(rings[0])
            shape += "</coordinates></LinearRing></outerBoundaryIs>"
            for hole in rings[1:]:
                shape += "<innerBoundaryIs><LinearRing><coordinates>" + _kml_coords(hole)
                shape += "</coordinates></LinearRing></innerBoundaryIs>"
            shape += "</Polygon>"
        self._out.write(
            f"<Placemark><name>task {props['task_id']}: {escape(label or 'no consensus')}</name>"
            f"<styleUrl>#{_style_id(label)}</styleUrl><ExtendedData>{data}</ExtendedData>{shape}</Placemark>\n"
        )

    def add_point(self, point: Mapping[str, Any]) -> None:
        self._out.write(
            f"<Placemark><name>point on task {point['task_id']} ({point['n_volunteers']} volunteers)</name>"
            f'<ExtendedData><Data name="question"><value>{escape(str(point["question"]))}</value></Data>'
            f"</ExtendedData><Point><coordinates>{point['lon']:.7f},{point['lat']:.7f},0</coordinates>"
            "</Point></Placemark>\n"
        )

    def close(self) -> None:
        self._out.write("</Document>\n</kml>\n")


def _style_id(label: str) -> str:
    safe = "".join(c if c.isalnum() else "_" for c in label)
    return f"label-{safe}" if label else "label-none"


def _kml_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


def _kml_coords(ring: Iterable[Iterable[float]]) -> str:
    return " ".join(f"{float(x):.7f},{float(y):.7f},0" for x, y, *_ in ring)


def write_csv(out: HashingWriter, header: list[str]) -> Any:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    return writer


def ledger_line(entry: Mapping[str, Any]) -> str:
    line = {
        "seq": entry["seq"],
        "prev_hash": entry["prev_hash"],
        "entry_hash": entry["entry_hash"],
        "record": entry["record"],
    }
    return json.dumps(line, ensure_ascii=False, sort_keys=False) + "\n"


CUSTODY_EVENTS = {
    "source_ingested": "ingest",
    "tasks_derived": "derive",
    "decision": "review",
    "export": "export",
}


def custody_event(entry: Mapping[str, Any]) -> dict[str, Any] | None:
    """The chain-of-custody event a ledger entry stands for, or None (answers are in answers.csv)."""
    record = entry["record"]
    event = CUSTODY_EVENTS.get(str(record.get("type")))
    if event is None:
        return None
    details = {k: v for k, v in record.items() if k not in ("type", "at")}
    return {
        "event": event,
        "at": record.get("at"),
        "ledger_seq": entry["seq"],
        "ledger_entry_hash": entry["entry_hash"],
        "record_type": record.get("type"),
        **details,
    }


# ---------------------------------------------------------------- verification


@dataclass(frozen=True)
class PackageProblem:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def read_bag_info(root: Path) -> dict[str, str]:
    info: dict[str, str] = {}
    path = root / "bag-info.txt"
    if not path.is_file():
        return info
    for line in path.read_text(encoding="utf-8").splitlines():
        if ":" in line and not line[:1].isspace():
            key, value = line.split(":", 1)
            info[key.strip()] = value.strip()
    return info


def _read_manifest(path: Path) -> dict[str, str] | PackageProblem:
    entries: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(None, 1)
        if len(parts) != 2 or len(parts[0]) != 64:
            return PackageProblem(path.name, f"line {number} is not '<sha256>  <path>'")
        entries[unquote(parts[1].strip())] = parts[0].lower()
    return entries


def package_verify(root: str | Path) -> list[PackageProblem]:
    """Every problem found in a package, most fundamental first (empty when intact).

    Checks the BagIt declaration, the tag manifest, that the payload holds exactly the files the manifest
    lists with the listed SHA-256, Payload-Oxum, and that the included ledger is an intact chain ending at
    the Ledger-Head-Hash of bag-info.txt.
    """
    root = Path(root)
    if not root.is_dir():
        return [PackageProblem(str(root), "not a directory")]
    problems: list[PackageProblem] = []
    for name in ("bagit.txt", "bag-info.txt", MANIFEST, TAGMANIFEST):
        if not (root / name).is_file():
            problems.append(PackageProblem(name, "missing"))
    if problems:
        return problems
    if not (root / "bagit.txt").read_text(encoding="utf-8").startswith("BagIt-Version: 1.0"):
        problems.append(PackageProblem("bagit.txt", "not a BagIt 1.0 declaration"))
    tags = _read_manifest(root / TAGMANIFEST)
    if isinstance(tags, PackageProblem):
        return [tags]
    for name, expected in tags.items():
        path = root / name
        if not path.is_file():
            problems.append(PackageProblem(name, "listed in tagmanifest-sha256.txt but missing"))
        elif _sha256_file(path) != expected:
            problems.append(PackageProblem(name, "SHA-256 differs from tagmanifest-sha256.txt"))
    manifest = _read_manifest(root / MANIFEST)
    if isinstance(manifest, PackageProblem):
        return [*problems, manifest]
    on_disk = set()
    for dirpath, _, filenames in os.walk(root / "data"):
        for filename in filenames:
            on_disk.add((Path(dirpath) / filename).relative_to(root).as_posix())
    for name in manifest:
        if name not in on_disk:
            problems.append(PackageProblem(name, "listed in manifest-sha256.txt but missing (removed)"))
    for name in sorted(on_disk - set(manifest)):
        problems.append(PackageProblem(name, "not listed in manifest-sha256.txt (added)"))
    total_bytes = 0
    for name, expected in manifest.items():
        if name not in on_disk:
            continue
        path = root / name
        total_bytes += path.stat().st_size
        if _sha256_file(path) != expected:
            detail = "SHA-256 differs from manifest-sha256.txt (changed)"
            if name == LEDGER_PATH:
                chain = _ledger_problem(path, None)
                if chain is not None:
                    detail += f"; {chain}"
            problems.append(PackageProblem(name, detail))
    info = read_bag_info(root)
    oxum = info.get("Payload-Oxum")
    if oxum and oxum != f"{total_bytes}.{len(on_disk)}" and not problems:
        problems.append(PackageProblem("bag-info.txt", f"Payload-Oxum {oxum} does not match the payload"))
    head = info.get("Ledger-Head-Hash")
    if not head:
        problems.append(PackageProblem("bag-info.txt", "no Ledger-Head-Hash"))
    elif (root / LEDGER_PATH).is_file():
        chain = _ledger_problem(root / LEDGER_PATH, head)
        if chain is not None:
            problems.append(PackageProblem(LEDGER_PATH, str(chain)))
    else:
        problems.append(PackageProblem(LEDGER_PATH, "missing"))
    return problems


def _ledger_problem(path: Path, head: str | None) -> ledger.LedgerProblem | None:
    def entries() -> Iterator[Any]:
        with open(path, encoding="utf-8") as stream:
            for number, line in enumerate(stream):
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    yield {"seq": number, "malformed": line}

    return ledger.verify_entries(entries(), expected_head=head)


def _sha256_file(path: Path) -> str:
    with open(path, "rb") as stream:
        return _sha256_stream(stream)


# ---------------------------------------------------------------- archives


def iter_tar(root: Path, *, arcname: str | None = None) -> Iterator[bytes]:
    """A ustar/pax archive of a directory, produced in chunks (never the whole archive in memory)."""
    import tarfile

    base = arcname or root.name
    mtime = int(root.stat().st_mtime)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = Path(dirpath).relative_to(root)
        for filename in sorted(filenames):
            path = Path(dirpath) / filename
            info = tarfile.TarInfo(str(Path(base) / rel_dir / filename))
            info.size = path.stat().st_size
            info.mtime = mtime
            info.mode = 0o644
            yield info.tobuf(format=tarfile.PAX_FORMAT)
            with open(path, "rb") as stream:
                while chunk := stream.read(CHUNK_BYTES):
                    yield chunk
            if info.size % 512:
                yield b"\0" * (512 - info.size % 512)
    yield b"\0" * 1024


def tar_write(root: Path, target: Path) -> tuple[str, int]:
    """Write the package as one tar file; returns its SHA-256 and size."""
    digest = hashlib.sha256()
    size = 0
    with open(target, "wb") as out:
        for chunk in iter_tar(root):
            out.write(chunk)
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def safe_member(root: Path, relpath: str) -> Path | None:
    """A file inside the package named by a relative path, or None if the path leaves it or is absent."""
    candidate = (root / relpath).resolve()
    if not candidate.is_file() or root.resolve() not in candidate.parents:
        return None
    return candidate


def quote_path(relpath: str) -> str:
    return quote(relpath)
