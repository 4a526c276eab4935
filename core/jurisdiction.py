"""The jurisdiction tree (辖区树): city → … → unit grid (网格), as configuration.

Why configuration and not code: cities cut their trees differently. Guiyang runs three command
levels (city 市 → district 区 → new-type community 社区), Changsha four (city → district →
street 街道 → community), and grids are redrawn whenever households move. So the levels, their
names, the nodes, the grid polygons, the grid teams and the departments all come from one
versioned JSON file per city, loaded once at start-up and then read-only.

Why so much checking at load: everything downstream trusts this tree. A grid whose parent is
wrong sends cases to the wrong command centre; two overlapping grids make ``locate`` answer
differently on different days; a missing department makes triage propose nobody. Such mistakes
must stop the process at start-up with a message an admin can act on, never surface as a
mis-dispatched case weeks later. ``load`` collects every problem it finds and raises one
:class:`JurisdictionError` listing them all.

File format (``deploy/cities/<name>/city.json``; ``deploy/cities/README.md`` has an example)::

    {
      "version": 3,                  # config version, int >= 1; bump on every change
      "note": "free text",           # optional
      "city": {"code": "520100", "name_zh": "贵阳市", "name_en": "Guiyang"},
      "code_scheme": "gbt2260",      # optional: "free" (default) or "gbt2260"
      "levels": [                    # optional (default: city/district/community/grid);
        {"key": "city", "name_zh": "市", "name_en": "City", "command": true},
        ...                          # top-down; first = root (the city), last = grid level
        {"key": "grid", "name_zh": "网格", "name_en": "Grid", "command": false}
      ],
      "nodes": [                     # every non-root, non-grid node; parent = a node one
        {"code": "520102", "name_zh": "南明区", "name_en": "Nanming District",
         "level": "district", "parent": "520100"}, ...   # level above
      ],
      "grids": [
        {"code": "520102001001", "name_zh": "…", "name_en": "…", "parent": "520102001",
         "polygon": [[106.71, 26.58], [106.73, 26.58], [106.73, 26.56], [106.71, 26.56]],
         "team": {"inspector": "insp-520102001001", "instructor": "inst-520102001001",
                  "police": "pol-520102001001"},
         "households": 420}, ...
      ],
      "departments": [
        {"code": "D-520102-sanitation", "name_zh": "南明区环卫局",
         "name_en": "Nanming District Sanitation Bureau", "node": "520102",
         "functions": ["sanitation"]}, ...
      ]
    }

Rules enforced at load:

* Level keys are unique, at least two levels, the last (grid) level has ``command: false``,
  and at least one level is a command level.
* Codes are unique across the city, nodes, grids and departments together (one namespace, so a
  code in an event is never ambiguous), and use only ``A-Z a-z 0-9 _ -`` (node codes become
  NATS subject tokens via :meth:`Jurisdiction.partition_of`).
* Each node's parent exists and sits exactly one level above it; the root is declared only by
  ``city``. Each grid's parent sits at the level just above grids.
* Polygons are ``[lon, lat]`` rings (GeoJSON order; the closing point is optional and is
  dropped), must be valid (no self-intersection) with non-zero area, and grids must not
  overlap (sharing edges is fine).
* Departments sit at a known non-grid node, carry functions only from :data:`FUNCTIONS`, and
  no two departments at one node share a function (dispatch needs one answer).
* With ``code_scheme: "gbt2260"`` codes are digits and embed their ancestors (DOMAIN.md):
  the children of the root start with the root's GB/T 2260 prefix (``520100`` → ``5201``) and
  have its length; deeper codes start with their parent's code; one length per level.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import shapely
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator
from shapely.geometry import Point, Polygon
from shapely.geometry.polygon import orient
from shapely.validation import explain_validity

from core.basemap import BaseMap

__all__ = [
    "CITY_MARGIN_M",
    "DEFAULT_LEVELS",
    "FUNCTIONS",
    "CityConfig",
    "CityInfo",
    "Department",
    "Grid",
    "GridTeam",
    "Jurisdiction",
    "JurisdictionError",
    "Level",
    "Node",
    "UnknownCode",
    "UnknownLevel",
]

#: The fixed department function tags (zh, en). The category catalogue routes a case by one of
#: these tags, never by a department's name, so a city can rename or merge bureaus freely.
FUNCTIONS: dict[str, tuple[str, str]] = {
    "sanitation": ("环卫", "Sanitation"),
    "municipal": ("市政", "Municipal works"),  # roads, manholes, street lamps, bus stops
    "greening": ("园林绿化", "Landscaping and greening"),
    "urban_management": ("城管执法", "Urban management enforcement"),
    "housing": ("住建", "Housing and construction"),
    "water": ("水务", "Water"),
    "traffic": ("交通/交警", "Traffic and traffic police"),
    "public_security": ("公安", "Public security"),
    "market": ("市场监管", "Market regulation"),
    "civil_affairs": ("民政", "Civil affairs"),
    "mediation": ("司法调解", "Mediation"),
    "emergency": ("应急管理", "Emergency management"),
    "environment": ("生态环境", "Ecology and environment"),
    "community_service": ("社区服务", "Community service"),
}

#: ``in_city`` accepts points this far outside the grids: phone GPS drifts tens to hundreds of
#: metres, and a report from just across the edge still belongs to this city's centre.
CITY_MARGIN_M = 2000.0

#: Overlap smaller than this (deg², ≈ 1 m²) is float noise from GIS exports along shared edges,
#: not a real double assignment; anything larger is refused.
_OVERLAP_TOLERANCE_DEG2 = 1e-10

_M_PER_DEG_LAT = 110_540.0
_M_PER_DEG_LON_EQUATOR = 111_320.0

_CODE_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_LEVEL_KEY_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


# --------------------------------------------------------------------------- errors


class JurisdictionError(ValueError):
    """The jurisdiction configuration is unusable; ``problems`` lists every reason found."""

    def __init__(self, source: str, problems: Iterable[str]) -> None:
        self.source = source
        self.problems = list(problems)
        count = len(self.problems)
        head = f"{source}: {count} problem{'s' if count != 1 else ''} in jurisdiction config"
        super().__init__(head + "".join(f"\n  - {p}" for p in self.problems))


class UnknownCode(KeyError):
    """A lookup named a code that is not in the tree (a caller's mistake, not a config one)."""

    def __init__(self, code: str, kind: str = "code") -> None:
        super().__init__(code)
        self.code = code
        self.kind = kind

    def __str__(self) -> str:
        # KeyError's default str() is repr(arg); say what was looked for instead.
        return f"unknown {self.kind} {self.code!r}"


class UnknownLevel(UnknownCode):
    """A lookup named a level key the city does not configure (e.g. ``street`` in Guiyang)."""

    def __init__(self, key: str) -> None:
        super().__init__(key, "level")


# --------------------------------------------------------------------------- models


def _check_code(value: str) -> str:
    if not _CODE_RE.fullmatch(value):
        raise ValueError(
            f"code {value!r} must be 1-64 characters of A-Z a-z 0-9 _ - "
            "(codes become NATS subject tokens and URL path segments)"
        )
    return value


def _check_level_key(value: str) -> str:
    if not _LEVEL_KEY_RE.fullmatch(value):
        raise ValueError(f"level key {value!r} must be lower-case letters, digits and _")
    return value


Code = Annotated[str, AfterValidator(_check_code)]
LevelKey = Annotated[str, AfterValidator(_check_level_key)]
Text = Annotated[str, Field(min_length=1)]


class _Frozen(BaseModel):
    """Config records are shared by every request handler, so they are immutable."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Level(_Frozen):
    """One level of the tree. ``command``: a command centre (指挥中心) sits at this level, so
    cases can be owned, dispatched from and escalated to it (grids are never command levels)."""

    key: LevelKey
    name_zh: Text
    name_en: Text
    command: bool


#: The default three-level tree (DOMAIN.md): city → district → community → grid.
DEFAULT_LEVELS: tuple[Level, ...] = (
    Level(key="city", name_zh="市", name_en="City", command=True),
    Level(key="district", name_zh="区", name_en="District", command=True),
    Level(key="community", name_zh="社区", name_en="Community", command=True),
    Level(key="grid", name_zh="网格", name_en="Grid", command=False),
)


class Node(_Frozen):
    """A non-grid place in the tree (city, district, street, community …). Only the root,
    built from the file's ``city`` record, has ``parent=None``."""

    code: Code
    name_zh: Text
    name_en: Text
    level: str
    parent: str | None = None


class GridTeam(_Frozen):
    """The three people each grid has (user ids): inspector 网格员, party-building instructor
    党建指导员, grid police officer 网格民警. Verification tasks go to the inspector."""

    inspector: Text
    instructor: Text
    police: Text


class Grid(_Frozen):
    """A unit grid (网格): the leaf every case location resolves to.

    ``polygon`` is an open ring of ``(lon, lat)`` pairs (GeoJSON order); a closing point equal
    to the first is dropped at validation so consumers never see it twice."""

    code: Code
    name_zh: Text
    name_en: Text
    parent: str
    polygon: list[tuple[float, float]]
    team: GridTeam
    households: Annotated[int, Field(ge=0)]

    @field_validator("polygon")
    @classmethod
    def _ring(cls, ring: list[tuple[float, float]]) -> list[tuple[float, float]]:
        if len(ring) >= 2 and ring[0] == ring[-1]:
            ring = ring[:-1]
        if len(ring) < 3:
            raise ValueError("a polygon needs at least 3 distinct [lon, lat] points")
        for lon, lat in ring:
            if not (math.isfinite(lon) and math.isfinite(lat)):
                raise ValueError(f"point [{lon}, {lat}] is not finite")
            if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
                raise ValueError(
                    f"point [{lon}, {lat}] is not a [lon, lat] pair (lon ±180, lat ±90)"
                )
        return ring

    @property
    def geometry(self) -> Polygon:
        """The polygon as a shapely geometry in (lon, lat) coordinates (built per call:
        caching it on a model would go stale under ``model_copy(update=...)``)."""
        return Polygon(self.polygon)

    @property
    def centroid(self) -> tuple[float, float]:
        """``(lat, lon)`` of the grid's centre: the default location of a report that names
        only its grid. Falls back to a point on the surface when the centroid of a concave
        polygon lies outside it, so the point always locates back to this grid."""
        shape = self.geometry
        point = shape.centroid
        if not shape.contains(point):
            point = shape.point_on_surface()
        return (point.y, point.x)


class Department(_Frozen):
    """A handling department (处置部门) attached to a node; ``functions`` say which kinds of
    case it handles, so triage can find "the sanitation department of this district"."""

    code: Code
    name_zh: Text
    name_en: Text
    node: str
    functions: Annotated[list[str], Field(min_length=1)]

    @field_validator("functions")
    @classmethod
    def _known_functions(cls, functions: list[str]) -> list[str]:
        for function in functions:
            if function not in FUNCTIONS:
                allowed = ", ".join(FUNCTIONS)
                raise ValueError(f"unknown function {function!r} (allowed: {allowed})")
        if len(set(functions)) != len(functions):
            raise ValueError(f"functions {functions} repeat a tag")
        return functions


class CityInfo(_Frozen):
    """The root of the tree (the city node)."""

    code: Code
    name_zh: Text
    name_en: Text


class CityConfig(_Frozen):
    """The whole ``city.json`` file, checked field by field (semantic checks follow in
    :meth:`Jurisdiction.from_config`)."""

    version: Annotated[int, Field(ge=1)]
    note: str = ""
    city: CityInfo
    code_scheme: Literal["free", "gbt2260"] = "free"
    levels: list[Level] = Field(default_factory=lambda: list(DEFAULT_LEVELS))
    nodes: list[Node] = Field(default_factory=list)
    grids: list[Grid]
    departments: list[Department] = Field(default_factory=list)
    #: 底图: the city's tile source (``core/basemap.py``); none = grids on a plain background.
    basemap: BaseMap | None = None


# --------------------------------------------------------------------------- the tree


class Jurisdiction:
    """A loaded, validated, read-only jurisdiction tree with spatial lookups.

    Build it with :meth:`load` (a city folder or its ``city.json``), :meth:`from_dict` or
    :meth:`from_config`. All lookups by code raise :class:`UnknownCode` for codes that do not
    exist, and :class:`UnknownLevel` (a subclass) for unknown level keys."""

    city_code: str
    name_zh: str
    name_en: str
    version: int
    code_scheme: str
    basemap: BaseMap | None
    source: str
    levels: list[Level]
    nodes: dict[str, Node]
    grids: dict[str, Grid]
    departments: dict[str, Department]

    # ---------------------------------------------------------------- construction

    @classmethod
    def load(cls, path: Path | str) -> Jurisdiction:
        """Read and validate a city: ``path`` is a city folder (reads its ``city.json``) or
        the JSON file itself. The only method that touches the file system."""
        path = Path(path)
        file = path / "city.json" if path.is_dir() else path
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise JurisdictionError(str(file), [f"cannot read file: {exc.strerror}"]) from exc
        return cls._from_text(text, str(file))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> Jurisdiction:
        """Validate an already-parsed config exactly as :meth:`load` would (same strictness:
        the dict goes through JSON so ``"420"`` is refused as a household count either way)."""
        return cls._from_text(json.dumps(data, ensure_ascii=False), source)

    @classmethod
    def _from_text(cls, text: str, source: str) -> Jurisdiction:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise JurisdictionError(
                source, [f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"]
            ) from exc
        try:
            config = CityConfig.model_validate_json(text, strict=True)
        except ValidationError as exc:
            raise JurisdictionError(source, _describe(exc, raw)) from exc
        return cls.from_config(config, source)

    @classmethod
    def from_config(cls, config: CityConfig, source: str = "<config>") -> Jurisdiction:
        """Check the tree as a whole (parents, levels, overlaps, departments) and index it."""
        problems = _check(config)
        if problems:
            raise JurisdictionError(source, problems)
        return cls(config, source)

    def __init__(self, config: CityConfig, source: str = "<config>") -> None:
        """Index an already-checked config; use :meth:`from_config` unless you ran ``_check``."""
        self.source = source
        self.city_code = config.city.code
        self.name_zh = config.city.name_zh
        self.name_en = config.city.name_en
        self.version = config.version
        self.code_scheme = config.code_scheme
        self.basemap = config.basemap
        self.levels = list(config.levels)
        self._level_index = {level.key: i for i, level in enumerate(self.levels)}
        self.grid_level = self.levels[-1].key

        root = Node(
            code=config.city.code,
            name_zh=config.city.name_zh,
            name_en=config.city.name_en,
            level=self.levels[0].key,
            parent=None,
        )
        self.root = root
        self.nodes = {root.code: root}
        self.nodes.update((n.code, n) for n in sorted(config.nodes, key=lambda n: n.code))
        self.grids = {g.code: g for g in sorted(config.grids, key=lambda g: g.code)}
        self.departments = {d.code: d for d in sorted(config.departments, key=lambda d: d.code)}

        children: dict[str, list[str]] = {code: [] for code in self.nodes}
        parent_of: dict[str, str] = {}
        for node in self.nodes.values():
            if node.parent is not None:
                children[node.parent].append(node.code)
                parent_of[node.code] = node.parent
        for grid in self.grids.values():
            children[grid.parent].append(grid.code)
            parent_of[grid.code] = grid.parent
        self._children = {code: sorted(kids) for code, kids in children.items()}

        # Ancestors are asked for on every command; the tree is small, so precompute them.
        self._ancestors: dict[str, tuple[str, ...]] = {}
        for code in [*self.nodes, *self.grids]:
            chain: list[str] = []
            cursor = parent_of.get(code)
            while cursor is not None:
                chain.append(cursor)
                cursor = parent_of.get(cursor)
            self._ancestors[code] = tuple(chain)
        under: dict[str, list[str]] = {code: [] for code in self.nodes}
        for code in self.grids:
            for ancestor in self._ancestors[code]:
                under[ancestor].append(code)
        self._grids_under = under  # grid codes are inserted in sorted order

        self._dept_by_function: dict[tuple[str, str], Department] = {}
        self._depts_at: dict[str, list[Department]] = {code: [] for code in self.nodes}
        for dept in self.departments.values():
            self._depts_at[dept.node].append(dept)
            for function in dept.functions:
                self._dept_by_function[(dept.node, function)] = dept

        # Spatial index: an STRtree over grid polygons keeps locate() ~O(log n) per point.
        self._grid_codes = list(self.grids)
        self._grid_shapes = [self.grids[c].geometry for c in self._grid_codes]
        self._tree = shapely.STRtree(self._grid_shapes)
        self._shape_of = dict(zip(self._grid_codes, self._grid_shapes, strict=True))
        shapely.prepare(self._grid_shapes)  # in_grid's point tests: ≈ 0.1 ms per 100 grids
        min_lon, min_lat, max_lon, max_lat = (
            float(v) for v in shapely.total_bounds(self._grid_shapes)
        )
        self._bounds = (min_lon, min_lat, max_lon, max_lat)
        # in_city measures in metres on a local equirectangular projection (plenty accurate
        # at city scale), so the margin is a distance rather than a fudge in degrees.
        self._lon_scale = _M_PER_DEG_LON_EQUATOR * math.cos(math.radians((min_lat + max_lat) / 2))
        union = shapely.unary_union(self._grid_shapes)
        self._union_m = shapely.transform(union, self._to_metres)
        shapely.prepare(self._union_m)

    def __repr__(self) -> str:
        return (
            f"<Jurisdiction {self.city_code} {self.name_en} v{self.version}: "
            f"{len(self.nodes)} nodes, {len(self.grids)} grids, "
            f"{len(self.departments)} departments>"
        )

    def _to_metres(self, coords: Any) -> Any:
        out = coords.copy()
        out[:, 0] = coords[:, 0] * self._lon_scale
        out[:, 1] = coords[:, 1] * _M_PER_DEG_LAT
        return out

    # ---------------------------------------------------------------- lookups by code

    def node(self, code: str) -> Node:
        """The non-grid node with this code (the city included)."""
        try:
            return self.nodes[code]
        except KeyError:
            raise UnknownCode(code, "node") from None

    def grid(self, code: str) -> Grid:
        """The grid with this code."""
        try:
            return self.grids[code]
        except KeyError:
            raise UnknownCode(code, "grid") from None

    #: A grid team member's duty, as people call it (GridTeam's fields).
    TEAM_DUTIES = (("inspector", "网格员"), ("instructor", "党建指导员"), ("police", "网格民警"))

    def team_members(self, ids: Iterable[str]) -> dict[str, tuple[Grid, str]]:
        """The grid teams' members among ``ids``: id → (their grid, their role). A city's
        layers name each grid's team by user id; one without an account yet (the sample
        city's ``insp-<grid>``) is still somebody: 新华社区第三网格 网格员."""
        wanted = set(ids)
        found: dict[str, tuple[Grid, str]] = {}
        if not wanted:
            return found
        for grid in self.grids.values():
            for role, _duty in self.TEAM_DUTIES:
                member = getattr(grid.team, role)
                if member in wanted:
                    found[member] = (grid, role)
            if len(found) == len(wanted):
                break
        return found

    def team_names(self, ids: Iterable[str]) -> dict[str, str]:
        """Display names of grid team members among ``ids`` ("<grid name> <duty>")."""
        duties = dict(self.TEAM_DUTIES)
        return {member: f"{grid.name_zh} {duties[role]}"
                for member, (grid, role) in self.team_members(ids).items()}

    def department(self, code: str) -> Department:
        """The department with this code."""
        try:
            return self.departments[code]
        except KeyError:
            raise UnknownCode(code, "department") from None

    def level(self, key: str) -> Level:
        """The level with this key."""
        return self.levels[self._level_idx(key)]

    def level_of(self, code: str) -> str:
        """Level key of a node or grid code (the grid level key for grids)."""
        if code in self.grids:
            return self.grid_level
        return self.node(code).level

    def _level_idx(self, key: str) -> int:
        try:
            return self._level_index[key]
        except KeyError:
            raise UnknownLevel(key) from None

    def _known(self, code: str) -> None:
        if code not in self.nodes and code not in self.grids:
            raise UnknownCode(code, "node or grid")

    # ---------------------------------------------------------------- tree walks

    def ancestors(self, code: str) -> list[Node]:
        """Nodes above a grid or node: nearest parent first, the city last (empty for it)."""
        self._known(code)
        return [self.nodes[c] for c in self._ancestors[code]]

    def ancestor_at(self, code: str, level_key: str) -> Node:
        """The node at ``level_key`` on the path from ``code`` to the city. A node at that very
        level is its own answer, so ``ancestor_at(district, "district")`` is the district.
        Raises ``ValueError`` when ``level_key`` is the grid level or lies below ``code``."""
        index = self._level_idx(level_key)
        if level_key == self.grid_level:
            raise ValueError(f"{level_key!r} is the grid level; use grid() for grids")
        self._known(code)
        node = self.nodes.get(code)
        if node is not None and node.level == level_key:
            return node
        for ancestor in self._ancestors[code]:
            if self.nodes[ancestor].level == level_key:
                return self.nodes[ancestor]
        raise ValueError(
            f"{code!r} is at level {self.level_of(code)!r}, which is not below "
            f"{level_key!r} (level {index} of {len(self.levels)})"
        )

    def partition_of(self, code: str) -> str:
        """The district (level just below the root) owning a grid or node: the NATS subject /
        event-store partition key, so one district's load never queues behind another's.
        The city itself (and everything, in a tree with no level between city and grids)
        maps to the city code."""
        self._known(code)
        if len(self.levels) <= 2 or code == self.city_code:
            return self.city_code
        return self.ancestor_at(code, self.levels[1].key).code

    def children(self, code: str) -> list[str]:
        """Codes directly below a node (nodes, or grids for the lowest nodes), sorted; a grid
        has none."""
        self._known(code)
        return list(self._children.get(code, []))

    def grids_under(self, code: str) -> list[str]:
        """All grid codes at or below ``code``, sorted (a grid gives itself)."""
        self._known(code)
        if code in self.grids:
            return [code]
        return list(self._grids_under[code])

    def contains(self, ancestor_code: str, code: str) -> bool:
        """True if ``code`` is ``ancestor_code`` or lies below it: the jurisdiction check
        before a department or centre may act on a case in a grid."""
        self._known(ancestor_code)
        self._known(code)
        return code == ancestor_code or ancestor_code in self._ancestors[code]

    # ---------------------------------------------------------------- command levels

    def command_levels(self) -> list[str]:
        """Command level keys bottom-up (escalation order), e.g. community, district, city."""
        return [level.key for level in reversed(self.levels) if level.command]

    def level_above(self, level_key: str) -> str | None:
        """The next command level above ``level_key`` (上提一级 goes there); None at the top."""
        index = self._level_idx(level_key)
        for level in reversed(self.levels[:index]):
            if level.command:
                return level.key
        return None

    def command_node(self, code: str, level_key: str) -> Node:
        """The node at command level ``level_key`` whose centre owns a grid or node."""
        if not self.level(level_key).command:
            raise ValueError(f"{level_key!r} is not a command level")
        return self.ancestor_at(code, level_key)

    # ---------------------------------------------------------------- departments

    def find_department(self, function: str, node_code: str) -> Department | None:
        """The department with ``function`` at exactly ``node_code`` (no walking up: which
        level handles a case is the dispatcher's call, recorded in the event)."""
        if function not in FUNCTIONS:
            raise ValueError(f"unknown function {function!r} (allowed: {', '.join(FUNCTIONS)})")
        self.node(node_code)
        return self._dept_by_function.get((node_code, function))

    def departments_at(self, node_code: str) -> list[Department]:
        """Departments attached to a node, sorted by code."""
        self.node(node_code)
        return list(self._depts_at[node_code])

    # ---------------------------------------------------------------- geometry

    def locate(self, lat: float, lon: float) -> Grid | None:
        """The grid containing a GPS point, or None outside every grid. A point exactly on a
        shared edge belongs to one grid only: an interior hit wins, then the lowest code, so
        the answer never depends on index order."""
        if not (math.isfinite(lat) and math.isfinite(lon)):
            return None
        point = Point(lon, lat)
        hits = self._tree.query(point, predicate="intersects")
        if len(hits) == 0:
            return None
        if len(hits) == 1:
            return self.grids[self._grid_codes[int(hits[0])]]
        best = min(
            (not self._grid_shapes[int(i)].contains(point), self._grid_codes[int(i)]) for i in hits
        )
        return self.grids[best[1]]

    def in_grid(self, code: str, lat: float, lon: float) -> bool:
        """True when the GPS point lies in grid ``code``, its edge included.

        The on-site check of 核查 asks this of the case's own grid. :meth:`locate` answers
        another question (which one grid owns the point: on a shared edge, only one of the
        two), and walks the index to do it; here the grid is known, so its prepared polygon
        answers alone (about half the cost)."""
        if not (math.isfinite(lat) and math.isfinite(lon)):
            return False
        shape = self._shape_of.get(code)
        if shape is None:
            raise UnknownCode(code, "grid")
        return bool(shapely.intersects_xy(shape, lon, lat))

    def in_city(self, lat: float, lon: float, margin_m: float = CITY_MARGIN_M) -> bool:
        """True inside the union of all grids or within ``margin_m`` metres of it. Used to
        refuse reports whose GPS is clearly elsewhere, while tolerating drift at the edge."""
        if not (math.isfinite(lat) and math.isfinite(lon)):
            return False
        point = Point(lon * self._lon_scale, lat * _M_PER_DEG_LAT)
        if self._union_m.contains(point):  # prepared: the common case costs little
            return True
        return bool(self._union_m.distance(point) <= margin_m)

    def bounds(self) -> tuple[float, float, float, float]:
        """``(min_lon, min_lat, max_lon, max_lat)`` of all grids, e.g. to fit a map."""
        return self._bounds

    def to_geojson(self, under: str | None = None) -> dict[str, Any]:
        """A GeoJSON FeatureCollection of the grids at or below ``under`` (default: all).
        Rings are closed and counter-clockwise (RFC 7946); properties carry the grid's code,
        names, parent, households and each ancestor's code keyed by its level key, so a map
        can colour by district or community without another lookup."""
        codes = self.grids_under(under if under is not None else self.city_code)
        features = []
        for code in codes:
            grid = self.grids[code]
            ring = orient(grid.geometry, sign=1.0).exterior.coords
            properties: dict[str, Any] = {
                "code": grid.code,
                "name_zh": grid.name_zh,
                "name_en": grid.name_en,
                "parent": grid.parent,
                "households": grid.households,
            }
            for ancestor in self._ancestors[code]:
                properties[self.nodes[ancestor].level] = ancestor
            features.append(
                {
                    "type": "Feature",
                    "id": code,
                    "geometry": {
                        "type": "Polygon",
                        "coordinates": [[[x, y] for x, y in ring]],
                    },
                    "properties": properties,
                }
            )
        return {"type": "FeatureCollection", "features": features}


# --------------------------------------------------------------------------- validation


def _describe(exc: ValidationError, raw: Any) -> list[str]:
    """Pydantic errors as ``grids[3] (520102001004).households: message`` lines: the index
    finds the record in the file, the code tells the admin which grid it is."""
    lines = []
    for error in exc.errors():
        loc = error["loc"]
        parts: list[str] = []
        for i, item in enumerate(loc):
            if isinstance(item, int) and parts:
                parts[-1] += f"[{item}]"
                if i == 1 and isinstance(raw, dict):
                    records = raw.get(str(loc[0]))
                    if isinstance(records, list) and item < len(records):
                        record = records[item]
                        if isinstance(record, dict) and isinstance(record.get("code"), str):
                            parts[-1] += f" ({record['code']})"
            else:
                parts.append(str(item))
        where = ".".join(parts) or "file"
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}")
    return lines


def _check(config: CityConfig) -> list[str]:
    """Every semantic problem of a config (empty when it is sound)."""
    problems: list[str] = []
    levels = config.levels
    keys = [level.key for level in levels]
    for key in sorted({k for k in keys if keys.count(k) > 1}):
        problems.append(f"level key {key!r} is defined more than once")
    if len(levels) < 2:
        problems.append("need at least two levels: the city (first) and the grid level (last)")
        return problems
    if levels[-1].command:
        problems.append(
            f"the grid level {levels[-1].key!r} cannot be a command level (command: false)"
        )
    if not any(level.command for level in levels):
        problems.append("no command level: at least one level must have command: true")
    index = {level.key: i for i, level in enumerate(levels)}
    root_key, grid_key = levels[0].key, levels[-1].key
    known_levels = ", ".join(keys)

    # One namespace for every code, so an event's code never needs a type tag.
    seen: dict[str, str] = {config.city.code: "city"}

    def claim(code: str, where: str) -> None:
        if code in seen:
            problems.append(f"duplicate code {code!r}: {where} and {seen[code]}")
        else:
            seen[code] = where

    node_level: dict[str, str] = {config.city.code: root_key}
    for i, node in enumerate(config.nodes):
        claim(node.code, f"nodes[{i}]")
        node_level.setdefault(node.code, node.level)
    grid_codes: set[str] = set()
    for i, grid in enumerate(config.grids):
        claim(grid.code, f"grids[{i}]")
        grid_codes.add(grid.code)
    for i, dept in enumerate(config.departments):
        claim(dept.code, f"departments[{i}]")

    for node in config.nodes:
        what = f"node {node.code!r}"
        if node.level not in index:
            problems.append(f"{what} has unknown level {node.level!r} (levels: {known_levels})")
            continue
        if node.level == root_key:
            problems.append(
                f"{what} is at the root level {root_key!r}; the root is declared once, under 'city'"
            )
            continue
        if node.level == grid_key:
            problems.append(f"{what} is at the grid level {grid_key!r}; list it under 'grids'")
            continue
        expected = levels[index[node.level] - 1].key
        if node.parent is None:
            problems.append(f"{what} has no parent (expected a node at level {expected!r})")
        elif node.parent in grid_codes:
            problems.append(f"{what} has parent {node.parent!r}, which is a grid")
        elif node.parent not in node_level:
            problems.append(f"{what} has unknown parent {node.parent!r}")
        elif node_level[node.parent] != expected:
            problems.append(
                f"{what} at level {node.level!r} has parent {node.parent!r} at level "
                f"{node_level[node.parent]!r}; expected a parent at level {expected!r}"
            )

    grid_parent_level = levels[-2].key
    if not config.grids:
        problems.append("no grids: a jurisdiction needs at least one grid")
    for grid in config.grids:
        what = f"grid {grid.code!r}"
        if grid.parent in grid_codes:
            problems.append(f"{what} has parent {grid.parent!r}, which is a grid")
        elif grid.parent not in node_level:
            problems.append(f"{what} has unknown parent {grid.parent!r}")
        elif node_level[grid.parent] != grid_parent_level:
            problems.append(
                f"{what} has parent {grid.parent!r} at level {node_level[grid.parent]!r}; "
                f"a grid's parent must be at level {grid_parent_level!r}, the level just "
                "above grids"
            )
    problems.extend(_check_polygons(config.grids))

    owner: dict[tuple[str, str], str] = {}
    for dept in config.departments:
        what = f"department {dept.code!r}"
        if dept.node in grid_codes:
            problems.append(
                f"{what} is at grid {dept.node!r}; departments belong to tree nodes, not grids"
            )
            continue
        if dept.node not in node_level:
            problems.append(f"{what} is at unknown node {dept.node!r}")
            continue
        for function in dept.functions:
            other = owner.setdefault((dept.node, function), dept.code)
            if other != dept.code:
                problems.append(
                    f"departments {other!r} and {dept.code!r} at node {dept.node!r} both "
                    f"have function {function!r}; dispatch needs one department per "
                    "function per node"
                )

    if config.code_scheme == "gbt2260" and not problems:
        problems.extend(_check_gbt2260(config))
    return problems


def _check_polygons(grids: list[Grid]) -> list[str]:
    """Invalid polygons, and overlaps between valid ones (found via an STRtree, so a city of
    thousands of grids is checked in well under a second)."""
    problems: list[str] = []
    shapes: list[Polygon] = []
    codes: list[str] = []
    for grid in grids:
        shape = grid.geometry
        if not shape.is_valid:
            problems.append(f"grid {grid.code!r} polygon is invalid: {explain_validity(shape)}")
        elif shape.area <= 0:
            problems.append(f"grid {grid.code!r} polygon has zero area")
        else:
            shapes.append(shape)
            codes.append(grid.code)
    if not shapes:
        return problems
    tree = shapely.STRtree(shapes)
    left, right = tree.query(shapes, predicate="intersects")
    for i, j in zip(left.tolist(), right.tolist(), strict=True):
        if i >= j:
            continue
        overlap = shapes[i].intersection(shapes[j]).area
        if overlap > _OVERLAP_TOLERANCE_DEG2:
            lat = shapes[i].centroid.y
            m2 = overlap * _M_PER_DEG_LAT * _M_PER_DEG_LON_EQUATOR * math.cos(math.radians(lat))
            problems.append(
                f"grids {codes[i]!r} and {codes[j]!r} overlap (about {m2:,.0f} m²); "
                "every point must belong to exactly one grid"
            )
    return problems


def _check_gbt2260(config: CityConfig) -> list[str]:
    """Codes embed their ancestors (GB/T 2260 + 3 digits per level below the district), so a
    grid code alone tells a dispatcher its district and community."""
    problems: list[str] = []
    root = config.city.code
    if not (root.isdigit() and len(root) == 6):
        return [f"city code {root!r} is not a 6-digit GB/T 2260 code (code_scheme gbt2260)"]
    root_prefix = root
    while root_prefix.endswith("00") and len(root_prefix) > 2:
        root_prefix = root_prefix[:-2]
    length_at: dict[str, tuple[int, str]] = {}
    records: list[tuple[str, str, str]] = [(n.code, n.parent or "", n.level) for n in config.nodes]
    records += [(g.code, g.parent, config.levels[-1].key) for g in config.grids]
    for code, parent, level in records:
        if not code.isdigit():
            problems.append(f"code {code!r} is not all digits (code_scheme gbt2260)")
            continue
        if parent == root:
            prefix, needed = root_prefix, len(root)
            if len(code) != needed:
                problems.append(f"code {code!r} should have {needed} digits, like its city")
        else:
            prefix = parent
            if len(code) <= len(parent):
                problems.append(f"code {code!r} should be longer than its parent's {parent!r}")
        if not code.startswith(prefix):
            problems.append(
                f"code {code!r} does not embed its parent: expected it to start with "
                f"{prefix!r} (code_scheme gbt2260)"
            )
        first = length_at.setdefault(level, (len(code), code))
        if first[0] != len(code):
            problems.append(f"codes at level {level!r} differ in length: {first[1]!r} and {code!r}")
    return problems
