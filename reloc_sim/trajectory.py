"""Handheld-like camera paths of the synthetic scenes.

All the sequences of a scene walk the same tour of viewpoints spread over the free floor
(:func:`_roadmap`), along routes through the middle of the free space, each from its own
start and with its own jitter, so that the test sequences cover the space of the training
ones along other paths. The camera moves on C1 Hermite curves at a few centimetres and
degrees per frame, looks at walls and furniture 0.5-3 m away, stops now and then to look
around, and shakes a little. It never enters furniture and keeps away from the walls.

Poses are 4x4 camera-to-world matrices, camera frame as in 7-Scenes / OpenCV: x right,
y down, z forward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse import csgraph

from reloc_ros.data.coverage import coverage
from reloc_ros.data.sevenscenes import Intrinsics
from reloc_sim.config import SceneConfig, scene_configs
from reloc_sim.room import Room
from reloc_sim.seeds import TAG_PATH, TAG_VIEWPOINTS, make_rng


def _rotations(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """(M, 3, 3) camera-to-world rotations: looking along heading ``yaw`` (from +x towards
    +y), tilted up by ``pitch``, rolled by ``roll`` about the optical axis (radians)."""
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    f = np.stack([cp * cy, cp * sy, sp], axis=-1)
    r0 = np.stack([sy, -cy, np.zeros_like(yaw)], axis=-1)
    d0 = np.cross(f, r0)
    cr, sr = np.cos(roll)[:, None], np.sin(roll)[:, None]
    r = cr * r0 + sr * d0
    d = -sr * r0 + cr * d0
    return np.stack([r, d, f], axis=-1)


def _sparse_rays(intr: Intrinsics, nx: int = 12, ny: int = 9) -> np.ndarray:
    """(nx * ny, 3) camera-frame rays (z = 1) on a grid over the image."""
    us = (np.arange(nx) + 0.5) / nx * intr.width - 0.5
    vs = (np.arange(ny) + 0.5) / ny * intr.height - 0.5
    U, V = np.meshgrid(us, vs)
    return np.stack(
        [(U.ravel() - intr.cx) / intr.fx, (V.ravel() - intr.cy) / intr.fy, np.ones(U.size)], axis=1
    )


def _view_depths(
    room: Room, positions: np.ndarray, R: np.ndarray, rays: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(M, R) z-depths and surface indices seen along the sparse rays from M camera poses.

    Args:
        room: the room.
        positions: (M, 3) camera centres.
        R: (M, 3, 3) camera-to-world rotations.
        rays: (R, 3) camera-frame rays (z = 1, :func:`_sparse_rays`).
    """
    dirs = np.einsum("mij,rj->mri", R, rays).reshape(-1, 3)
    origins = np.repeat(positions, len(rays), axis=0)
    t, sid = room.cast(origins, dirs)
    return t.reshape(len(positions), len(rays)), sid.reshape(len(positions), len(rays))


@dataclass(frozen=True)
class _Segment:
    """One stretch of a camera path: C1 Hermite position curve and eased angles."""

    p0: np.ndarray
    p1: np.ndarray
    t0: np.ndarray  # unit tangents at both ends
    t1: np.ndarray
    a0: np.ndarray  # (yaw, pitch, roll) at both ends (radians, yaw unwrapped)
    a1: np.ndarray
    frames: float  # duration in frames

    def at(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions (M, 3) and angles (M, 3) at the curve parameters ``s`` (M,) in [0, 1]."""
        s = np.asarray(s, dtype=np.float64)[:, None]
        length = float(np.linalg.norm(self.p1 - self.p0))
        h00, h10 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s
        h01, h11 = -2 * s**3 + 3 * s**2, s**3 - s**2
        p = h00 * self.p0 + h10 * length * self.t0 + h01 * self.p1 + h11 * length * self.t1
        ease = 3 * s**2 - 2 * s**3
        return p, self.a0 + (self.a1 - self.a0) * ease

    def reversed(self) -> _Segment:
        """The same stretch walked backwards."""
        return _Segment(self.p1, self.p0, -self.t1, -self.t0, self.a1, self.a0, self.frames)


@dataclass(frozen=True)
class _Roadmap:
    """Where the sequences of a scene walk: viewpoints spread over the free floor, visited
    in a fixed cyclic ``tour``, and the walking route between any two of them."""

    viewpoints: np.ndarray  # (K, 2)
    tour: tuple[int, ...]  # cyclic visiting order of the viewpoints
    routes: dict  # (i, j) -> (n, 2) waypoints about 1 m apart from viewpoint i to j (ending at j)
    focus: np.ndarray | None = None  # (3,) the point the cameras look towards (focus_deg > 0)


def _roadmap(room: Room, config: SceneConfig, seed: int) -> _Roadmap:
    """Viewpoints (farthest-point sampled on the free floor) and the routes between them:
    shortest walks on the free-floor grid that keep to the middle of the free space.

    Args:
        room: the scene's room.
        config: the scene config (viewpoints, region_m, focus_deg, ...).
        seed: base seed of the scene (all sequences share the roadmap).
    """
    free = room._free
    rng = make_rng(TAG_VIEWPOINTS, seed, config.layout_seed)
    cells = free.cells(min_clearance=0.3)
    if len(cells) == 0:
        raise RuntimeError(f"layout {config.layout_seed}: the room has no free floor for the camera")
    if config.region_m > 0:  # a disc of the free floor, around the cell with the most free floor in it
        radius = config.region_m / 2.0
        around = np.array([(np.linalg.norm(cells - c, axis=1) <= radius).sum() for c in cells[::7]])
        centre = cells[::7][int(rng.choice(np.flatnonzero(around >= 0.9 * around.max())))]
        cells = cells[np.linalg.norm(cells - centre, axis=1) <= radius]
    chosen = [int(rng.integers(len(cells)))]
    dist = np.linalg.norm(cells - cells[chosen[0]], axis=1)
    while len(chosen) < config.viewpoints and dist.max() > 0.5:
        chosen.append(int(np.argmax(dist)))
        dist = np.minimum(dist, np.linalg.norm(cells - cells[chosen[-1]], axis=1))
    views = cells[chosen]

    # Grid graph of the free cells (8-neighbours); stepping next to the border costs more.
    grid = free.grid
    index = np.full(grid.shape, -1, dtype=np.int64)
    index[grid] = np.arange(int(grid.sum()))
    ci, cj = np.nonzero(grid)
    cost = 1.0 + 0.5 / np.maximum(ndimage.distance_transform_edt(grid) * free.res, free.res)
    rows, cols, weights = [], [], []
    for di, dj in ((1, 0), (0, 1), (1, 1), (1, -1)):
        ni, nj = ci + di, cj + dj
        ok = (ni >= 0) & (ni < grid.shape[0]) & (nj >= 0) & (nj < grid.shape[1])
        ok[ok] = grid[ni[ok], nj[ok]]
        rows.append(index[ci[ok], cj[ok]])
        cols.append(index[ni[ok], nj[ok]])
        weights.append(free.res * math.hypot(di, dj) * 0.5 * (cost[ci[ok], cj[ok]] + cost[ni[ok], nj[ok]]))
    n = len(ci)
    graph = sparse.coo_matrix(
        (np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    ).tocsr()
    vi, vj = np.floor((views + free.half) / free.res).astype(np.int64).T
    src = index[vi, vj]
    length, pred = csgraph.dijkstra(graph, directed=False, indices=src, return_predecessors=True)

    routes = {}
    for a in range(len(views)):
        for b in range(len(views)):
            if a == b:
                continue
            path, c = [], src[b]
            while c != src[a] and c >= 0:
                path.append(c)
                c = pred[a, c]
            path.append(src[a])
            xy = np.stack([free.xs[ci[path[::-1]]], free.ys[cj[path[::-1]]]], axis=1)
            arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(xy, axis=0), axis=1))])
            stops = np.linspace(0.0, arc[-1], max(1, int(round(arc[-1] / 1.0))) + 1)[1:]
            routes[(a, b)] = np.stack(
                [np.interp(stops, arc, xy[:, 0]), np.interp(stops, arc, xy[:, 1])], axis=1
            )

    # Tour: nearest unvisited viewpoint next (by walking distance).
    tour = [0]
    while len(tour) < len(views):
        rest = [v for v in range(len(views)) if v not in tour]
        tour.append(min(rest, key=lambda v: length[tour[-1], src[v]]))
    focus = _focus_point(room, config, views, rng) if config.focus_deg > 0 else None
    return _Roadmap(views, tuple(tour), routes, focus)


def _focus_point(room: Room, config: SceneConfig, views: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What the cameras of a scan look at: from the viewpoints' centre, the heading (±30°)
    that sees the most distinct pieces of furniture and decoration at a comfortable
    distance; the focus is the mean of their hit points.

    Args:
        room: the scene's room.
        config: the scene config (camera height, viewing distance).
        views: (K, 2) the viewpoints.
        rng: the roadmap's random generator.
    Returns:
        (3,) the focus point.
    """
    centre = views.mean(axis=0)
    z = float(np.mean(config.camera_height))
    n_yaw = 36
    yaw = np.linspace(-math.pi, math.pi, n_yaw, endpoint=False) + rng.uniform(0, 2 * math.pi / n_yaw)
    pitch = np.radians([-30.0, -15.0, 0.0, 10.0])
    Y, P = np.meshgrid(yaw, pitch, indexing="ij")
    dirs = np.stack([np.cos(Y) * np.cos(P), np.sin(Y) * np.cos(P), np.sin(P)], axis=-1).reshape(-1, 3)
    origin = np.array([centre[0], centre[1], z])
    t, sid = room.cast(np.repeat(origin[None], len(dirs), axis=0), dirs)
    near, far = config.view_distance
    spread = float(np.linalg.norm(views - centre, axis=1).max(initial=0.0))
    box = np.where((sid >= 6) & (t >= near) & (t <= far + spread), sid // 6, -1).reshape(n_yaw, len(pitch))
    hits = (origin + t[:, None] * dirs).reshape(n_yaw, len(pitch), 3)
    counts = np.array([len({b for b in box[(np.arange(-3, 4) + k) % n_yaw].ravel() if b >= 0})
                       for k in range(n_yaw)])
    best = np.flatnonzero(counts == counts.max())
    k = int(best[rng.integers(len(best))])
    window = (np.arange(-3, 4) + k) % n_yaw
    mask = box[window] >= 0
    if not mask.any():  # nothing but walls around: look at the wall straight ahead
        return hits[k, 1]
    return hits[window][mask].mean(axis=0)


def make_trajectory(room: Room, config: SceneConfig, seed: int, seq: int) -> np.ndarray:
    """Handheld-like camera path of one sequence: (config.frames, 4, 4) camera-to-world poses.

    The sequences of a scene walk the same tour of viewpoints spread over the free floor
    (training sequence i of n starts i/n of the way round, a test sequence where a random
    training one starts), along routes through the middle of the free floor,
    jittered, on smooth curves at about ``config.step_m`` per frame, turning at about
    ``config.step_deg`` per frame and stopping now and then to look around. The camera
    looks at surfaces ``config.view_distance`` away (preferably furniture and decorations),
    stays at ``config.camera_height``, and keeps the room's margins from the walls and
    from furniture (:meth:`reloc_sim.room.Room.is_free`).

    Args:
        room: the scene's room (``config.room()``).
        config: the scene config (path knobs and the image size for the field of view).
        seed: base seed of the scene.
        seq: sequence number (1-based); each one takes a different path.
    """
    if not 1 <= seq <= config.train_seqs + config.test_seqs:
        raise ValueError(
            f"sequence {seq} is not one of the config's 1..{config.train_seqs + config.test_seqs}"
        )
    road = _roadmap(room, config, seed)
    rng = make_rng(TAG_PATH, seed, config.layout_seed, seq)
    walker = _Walker(room, config, road, rng)
    n_steps = config.frames * config.frame_stride  # the walk; every frame_stride-th step is kept
    pos, p, ang = walker.start(seq)
    segments = walker.walk(seq, pos, p, ang, n_steps)
    return _sample_path(segments, config, rng, n_steps)


class _Walker:
    """The choices and checks of one sequence's camera path: where the camera may stand,
    where it looks, and whether a stretch between two poses is valid.

    Args:
        room: the scene's room.
        config: the scene config (path knobs and the image size for the field of view).
        road: the scene's roadmap (:func:`_roadmap`).
        rng: the sequence's random generator (every choice draws from it, in order).
    """

    def __init__(self, room: Room, config: SceneConfig, road: _Roadmap, rng: np.random.Generator):
        self.room, self.config, self.road, self.rng = room, config, road, rng
        self.rays = _sparse_rays(config.intrinsics)
        self.near, self.far = config.view_distance
        self.zlo, self.zhi = config.camera_height
        self.plo, self.phi = np.radians(config.pitch_deg)
        self.step_rad = math.radians(config.step_deg)
        self.max_turn = math.radians(config.max_turn_deg)
        self.roll_sd = math.radians(config.roll_deg)
        self.focus_sd = math.radians(config.focus_deg)

    def views_ok(self, P: np.ndarray, A: np.ndarray) -> bool:
        """Whether all poses (positions P (M, 3), angles A (M, 3): yaw, pitch, roll) are on
        free floor and see surfaces at a plausible distance."""
        ok = self.room.is_free(P[:, :2]) & (P[:, 2] >= self.zlo - 0.15) & (P[:, 2] <= self.zhi + 0.15)
        if not ok.all():
            return False
        z, _ = _view_depths(self.room, P, _rotations(A[:, 0], A[:, 1], A[:, 2]), self.rays)
        med = np.median(z, axis=1)
        return bool(np.all((med >= 0.8 * self.near) & (med <= 1.1 * self.far) & (np.quantile(z, 0.1, axis=1) >= 0.3)))

    def pick_view(self, p: np.ndarray, prev_yaw: float | None, n: int = 6) -> np.ndarray | None:
        """Angles (yaw, pitch, roll) for a waypoint: among n random candidates with a good
        viewing distance, preferably one that looks at furniture and decorations.

        Args:
            p: (3,) the camera position.
            prev_yaw: the previous heading (radians), None at the start.
            n: number of candidates.
        Returns:
            (3,) angles (radians), or None when no candidate views well.
        """
        rng, road = self.rng, self.road
        if road.focus is not None:  # towards the focus, the way people film a scene
            to = road.focus[:2] - p[:2]
            yaw = math.atan2(to[1], to[0]) + rng.normal(0.0, self.focus_sd, n)
            if prev_yaw is not None:  # the same turn, unwrapped next to the previous heading
                yaw = prev_yaw + (yaw - prev_yaw + math.pi) % (2 * math.pi) - math.pi
        elif prev_yaw is None:
            yaw = rng.uniform(-math.pi, math.pi, n)
        else:
            yaw = prev_yaw + rng.uniform(-self.max_turn, self.max_turn, n)
        roll = np.clip(rng.normal(0.0, self.roll_sd, n), -3 * self.roll_sd, 3 * self.roll_sd)
        cand = np.stack([yaw, rng.uniform(self.plo, self.phi, n), roll], axis=1)
        z, sid = _view_depths(
            self.room, np.repeat(p[None], n, axis=0), _rotations(cand[:, 0], cand[:, 1], cand[:, 2]), self.rays
        )
        med = np.median(z, axis=1)
        ok = (med >= self.near) & (med <= self.far) & (np.quantile(z, 0.1, axis=1) >= 0.3)
        if not ok.any():
            return None
        w = np.where(ok, (0.15 + (sid >= 6).mean(axis=1)) ** 2, 0.0)
        return cand[int(rng.choice(n, p=w / w.sum()))]

    def place(self, xy: np.ndarray, spread: float, z: float) -> np.ndarray | None:
        """A free 3D point near the floor point ``xy`` (2,) (jittered by ``spread`` m), at a
        height near ``z`` (m); None when the jittered point is not free."""
        xy = xy + self.rng.normal(0.0, spread, 2)
        if not self.room.is_free(xy[None])[0]:
            return None
        return np.array([xy[0], xy[1], float(np.clip(z + self.rng.normal(0.0, 0.15), self.zlo, self.zhi))])

    def segment(self, p, ang, t0, p1, ang1, t1) -> _Segment | None:
        """The stretch from (p, ang) to (p1, ang1) if all of it is valid. ``t0`` is the
        incoming direction (None: free), ``t1`` the planned direction at p1."""
        rng = self.rng
        chord = p1 - p
        length = float(np.linalg.norm(chord))
        if length < 1e-6:  # look around on the spot
            t0 = t1 = np.zeros(3)
        else:
            if t0 is None:
                t0 = _turn(chord / length, rng.uniform(-0.5, 0.5))
            t1 = _turn(t1 if t1 is not None else chord / length, rng.uniform(-0.25, 0.25))
        turn = float(np.abs(ang1 - ang).sum())
        frames = max(length / self.config.step_m, turn / self.step_rad, 2.0) * rng.uniform(0.9, 1.2)
        seg = _Segment(p, p1, t0, t1, ang, ang1, frames)
        return seg if self.views_ok(*seg.at(np.linspace(0.0, 1.0, int(math.ceil(frames)) + 1))) else None

    def look_around(self, p, ang) -> _Segment | None:
        """A stretch that turns on the spot at ``p`` from the angles ``ang`` (20 tries)."""
        for _ in range(20):
            ang1 = self.pick_view(p, ang[0])
            if ang1 is not None and (seg := self.segment(p, ang, None, p.copy(), ang1, None)) is not None:
                return seg
        return None

    def start(self, seq: int) -> tuple[int, np.ndarray, np.ndarray]:
        """Where sequence ``seq`` starts: its place on the tour, its position (3,) and angles (3,).

        Training sequences spread their starts over the tour, a test sequence starts where a
        random training sequence starts.
        """
        config, road, rng = self.config, self.road, self.rng
        k = len(road.tour)
        train = config.sequences["train"]
        first = train.index(seq) if seq in train else int(rng.integers(len(train)))
        pos = round(first * k / len(train)) % k
        for attempt in range(200):
            p = self.place(road.viewpoints[road.tour[pos]], 0.1 + 0.4 * attempt / 200, rng.uniform(self.zlo, self.zhi))
            ang = None if p is None else self.pick_view(p, None)
            if ang is not None:
                break
        else:
            raise RuntimeError(f"layout {config.layout_seed}: found no start view for sequence {seq}")
        return pos, p, ang

    def walk(self, seq: int, pos: int, p: np.ndarray, ang: np.ndarray, n_steps: int) -> list[_Segment]:
        """The stretches of sequence ``seq`` from its start (``pos`` on the tour, position
        ``p``, angles ``ang``), along the tour, until they last ``n_steps`` frames."""
        config, road, rng = self.config, self.road, self.rng
        k = len(road.tour)
        segments: list[_Segment] = []
        tangent: np.ndarray | None = None
        queue: list[tuple[np.ndarray, float, np.ndarray]] = []  # next floor points, jitter, direction
        total, failures = 0.0, 0
        while total < n_steps - 1:
            seg = None
            if not queue:  # next leg of the tour
                nxt = (pos + 1) % k
                way = road.routes[(road.tour[pos], road.tour[nxt])] if k > 1 else road.viewpoints[:1]
                pts = np.concatenate([p[None, :2], way])
                for i in range(1, len(pts)):
                    d = pts[min(i + 1, len(pts) - 1)] - pts[i - 1]
                    d3 = np.array([d[0], d[1], 0.0]) / max(float(np.linalg.norm(d)), 1e-9)
                    queue.append((pts[i], 0.3 if i == len(pts) - 1 else 0.12, d3))
                pos = nxt
                if segments and rng.uniform() < 0.25:  # stop at the viewpoint and look around
                    seg = self.look_around(p, ang)
            if seg is None:
                xy, spread, direction = queue[0]
                for _ in range(20):
                    p1 = self.place(xy, spread, p[2])
                    ang1 = None if p1 is None else self.pick_view(p1, ang[0])
                    if ang1 is not None and (seg := self.segment(p, ang, tangent, p1, ang1, direction)) is not None:
                        queue.pop(0)
                        failures = 0
                        break
            if seg is None:  # blocked: stop and look around, then walk on in any direction
                failures += 1
                if failures > 2:  # give up this waypoint
                    queue.pop(0)
                seg = self.look_around(p, ang)
            if seg is None and segments:  # walk back along the last stretch (known to be valid)
                seg = segments[-1].reversed()
            if seg is None:
                raise RuntimeError(f"layout {config.layout_seed}: the camera of sequence {seq} cannot move")
            segments.append(seg)
            total += seg.frames
            p, ang = seg.p1, seg.a1
            tangent = seg.t1 if np.any(seg.t1) else None
        return segments


def _sample_path(segments: list[_Segment], config: SceneConfig, rng: np.random.Generator, n_steps: int) -> np.ndarray:
    """The poses (config.frames, 4, 4) of a walk: its ``n_steps`` steps sampled at uniform
    times, shaken by hand (``config.shake_m``, ``config.shake_deg``, drawn from ``rng``),
    every ``config.frame_stride``-th kept."""
    starts = np.concatenate([[0.0], np.cumsum([sg.frames for sg in segments])])
    times = np.arange(n_steps, dtype=np.float64)
    which = np.clip(np.searchsorted(starts, times, side="right") - 1, 0, len(segments) - 1)
    P = np.zeros((n_steps, 3))
    A = np.zeros((n_steps, 3))
    for i, sg in enumerate(segments):
        m = which == i
        if m.any():
            P[m], A[m] = sg.at(np.clip((times[m] - starts[i]) / sg.frames, 0.0, 1.0))
    P = (P + _shake(rng, n_steps, 3, config.shake_m))[:: config.frame_stride]
    A = A + _shake(rng, n_steps, 3, math.radians(config.shake_deg))
    if config.sweep_deg > 0:  # a pan-tilt head sweeping slowly (drawn only then: other paths stay as they were)
        for axis, amplitude in ((0, config.sweep_deg), (1, config.sweep_deg / 2)):  # pan, then tilt
            period, phase = rng.uniform(150.0, 400.0), rng.uniform(0.0, 2 * math.pi)
            A[:, axis] += math.radians(amplitude) * np.sin(2 * math.pi * np.arange(n_steps) / period + phase)
    A = A[:: config.frame_stride]
    T = np.tile(np.eye(4), (config.frames, 1, 1))
    T[:, :3, :3] = _rotations(A[:, 0], A[:, 1], A[:, 2])
    T[:, :3, 3] = P
    return T


def _turn(v: np.ndarray, angle: float) -> np.ndarray:
    """Rotate a vector ``v`` (3,) by ``angle`` (radians) about the vertical axis."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1], v[2]])


def _shake(rng: np.random.Generator, n: int, dims: int, amplitude: float) -> np.ndarray:
    """Smooth hand shake: (n, dims) sums of three sinusoids with periods of 8-60 frames,
    standard deviation ``amplitude``.

    Args:
        rng: the sequence's random generator (periods and phases).
        n: number of steps.
        dims: number of shaken values per step.
        amplitude: standard deviation of the shake.
    """
    t = np.arange(n, dtype=np.float64)[:, None]
    out = np.zeros((n, dims))
    for _ in range(3):
        period = rng.uniform(8.0, 60.0, dims)
        phase = rng.uniform(0.0, 2 * math.pi, dims)
        out += np.sin(2 * math.pi * t / period + phase)
    return out * amplitude * math.sqrt(2.0 / 3.0)



def trajectories(config: SceneConfig, seed: int = 0) -> dict[int, np.ndarray]:
    """Every sequence's camera path of one scene (no rendering): seq -> (frames, 4, 4).

    Args:
        config: a single-scene config.
        seed: base seed of the scene.
    """
    room = config.room()
    return {q: make_trajectory(room, config, seed, q) for q in range(1, config.train_seqs + config.test_seqs + 1)}


def preset_coverage(config: SceneConfig | str, seed: int = 0):
    """The map coverage (:class:`reloc_ros.data.coverage.Coverage`) of each scene of a config,
    computed from its trajectories alone: its test frames against its training frames.

    Args:
        config: a config or a preset name (all its scenes).
        seed: base seed of the scenes.
    """
    out = []
    for c in scene_configs(config):
        paths = trajectories(c, seed)
        out.append(coverage(np.concatenate([paths[q] for q in c.sequences["train"]]),
                            np.concatenate([paths[q] for q in c.sequences["test"]]), c.name))
    return out
