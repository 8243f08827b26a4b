"""`DrawerStandIn`: a procedurally rendered CPU stand-in for SIMPLER's Google-Robot drawer scenes.

THIS IS NOT SIMPLER. It exists so that tests, CI and the CPU demo can exercise the editing wrapper,
the exact-mask compositing and the evaluation harness without SAPIEN, Vulkan or a GPU. It copies what
the rest of the project relies on from SIMPLER's drawer envs (``{Open,Close}{Top,Middle,Bottom}Drawer
CustomInScene-v0``, see REFERENCE.md section 7):

- the observation layout of the ``rgbd`` obs mode where it matters: a 640x512 ``overhead_camera`` frame
  under ``obs["image"]["overhead_camera"]["rgb"]`` and, with ``add_segmentation``, ``Segmentation``
  (int32, 4 channels) whose channel 1 holds actor/link ids, so that
  ``np.isin(seg[..., 1], env.cabinet_segmentation_ids)`` is the exact cabinet mask (robot arm excluded);
  ``obs["agent"]`` (qpos, qvel, base_pose), ``obs["extra"]["tcp_pose"]`` and ``obs["camera_param"]``;
- the 7-D action space (xyz delta, axis-angle delta, gripper), the drawer-joint success rule
  (open >= 0.15; close <= 0.05, starting from 0.2), the 113-step limit and ``get_language_instruction``;
- the nine robot start poses a0..c2, which move the robot-mounted camera as in SIMPLER (the camera mount
  and cabinet box were fitted to the cabinet masks of SIMPLER's start frames).

Everything else is deliberately simple: flat-shaded boxes and capsules drawn with numpy, no depth image,
and kinematic contact rules instead of physics. A closed gripper at a handle drags that drawer along the
pull axis; the gripper pressing a drawer front, open or closed, pushes it in. Rotation actions are
accepted and ignored (the gripper keeps pointing forward). ``obs["extra"]["handle_pos"]`` and
``obs["extra"]["drawer_qpos"]`` are privileged stand-in extras (SIMPLER has no such keys); the scripted
policies in ``policies.scripted`` use them.
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.appearance import (
    REAL_CABINET_STYLE,
    CabinetMaterial,
    RealCamera,
    check_appearance,
    check_noise_stream,
    real_cabinet_material,
    real_material_style,
)
from envs.protocol import (
    CLOSE_START_QPOS,
    CONTROL_FREQ,
    DRAWERS,
    MAX_EPISODE_STEPS,
    ROBOT_POSES,
    DrawerTask,
    check_pose,
)
from envs.simpler import POLICY_CAMERA

CAMERA_NAME = POLICY_CAMERA
_OBS_MODES = ("rgbd", "state_dict")
#: Direction (world frame) in which every drawer slides out; a pull moves the tcp along it.
PULL_DIRECTION = np.array([1.0, 0.0, 0.0])
PULL_DIRECTION.setflags(write=False)

#: Actor/link ids written to Segmentation channel 1 (channel 0 holds finer per-mesh ids).
GROUND_ID = 1
ROBOT_LINK_IDS: dict[str, int] = {
    "upper_arm": 5,
    "forearm": 6,
    "gripper": 8,
    "finger_left": 9,
    "finger_right": 10,
}
CABINET_LINK_IDS: dict[str, int] = {"body": 21, "top": 22, "middle": 23, "bottom": 24}
_HANDLE_MESH_IDS: dict[str, int] = {"top": 35, "middle": 36, "bottom": 37}
_MESH_ID_OFFSET = 10  # mesh id of a link's main visual = link id + offset

_INT32_MAX = np.iinfo(np.int32).max
_NEAR_PLANE = 0.05

# Albedos (RGB 0-255) picked from SIMPLER's rasterised start frames.
CABINET_ALBEDO = np.array([190.0, 148.0, 119.0])
_CAVITY_ALBEDO = np.array([70.0, 52.0, 40.0])
_TRAY_INSIDE_ALBEDO = np.array([150.0, 114.0, 90.0])
_HANDLE_ALBEDO = np.array([40.0, 26.0, 20.0])
_FLOOR_ALBEDO = np.array([170.0, 136.0, 108.0])
_WALL_ALBEDO = np.array([78.0, 58.0, 44.0])
_DESK_ALBEDO = np.array([32.0, 27.0, 24.0])
_ARM_ALBEDO = np.array([214.0, 208.0, 198.0])
_GRIPPER_ALBEDO = np.array([226.0, 166.0, 92.0])
_FINGER_ALBEDO = np.array([62.0, 60.0, 58.0])
_LIGHT_DIRECTION = np.array([0.45, -0.35, 0.82]) / np.linalg.norm([0.45, -0.35, 0.82])


@dataclass(frozen=True)
class DrawerStandInConfig:
    """Geometry, camera and contact rules of the stand-in. Lengths in metres, world frame as SIMPLER's
    (z up, the robot faces -x towards the cabinet, drawers slide out along +x)."""

    image_width: int = 640
    image_height: int = 512
    focal_length: float = 425.0
    # Camera mount on the robot base: forward offset, height and downward pitch (radians).
    camera_forward: float = 0.23
    camera_height: float = 1.30
    camera_pitch: float = 0.83
    cabinet_front_x: float = -0.02
    cabinet_center_y: float = 0.0
    cabinet_width: float = 0.62
    cabinet_depth: float = 0.69
    cabinet_height: float = 0.81
    cabinet_wall: float = 0.03
    #: (bottom, top) heights of the drawer openings, in DRAWERS order (top, middle, bottom).
    drawer_openings: tuple[tuple[float, float], ...] = ((0.49, 0.75), (0.28, 0.47), (0.07, 0.26))
    drawer_front_thickness: float = 0.02
    drawer_tray_depth: float = 0.45
    drawer_max_qpos: float = 0.32
    handle_half_width: float = 0.05
    handle_protrusion: float = 0.03
    handle_height_fraction: float = 0.45  # handle height within the drawer front, from its bottom
    # Robot (base frame: forward, left, up).
    tcp_start: tuple[float, float, float] = (0.60, -0.32, 1.00)
    tcp_start_jitter: float = 0.02
    workspace_low: tuple[float, float, float] = (0.15, -0.60, 0.05)
    workspace_high: tuple[float, float, float] = (1.10, 0.50, 1.15)
    shoulder: tuple[float, float, float] = (0.12, -0.45, 0.82)
    upper_arm_length: float = 0.45
    forearm_length: float = 0.45
    max_translation_per_step: float = 0.05
    # Contact rules.
    grasp_tolerance: tuple[float, float, float] = (0.03, 0.05, 0.03)  # |dx|, |dy|, |dz| to the handle
    slip_distance: tuple[float, float] = (0.08, 0.05)  # |dy|, |dz| at which a held handle slips
    finger_clearance: float = 0.015  # closest the tcp gets to a surface it presses against
    gripper_closed_threshold: float = 0.5


# --------------------------------------------------------------------------------------------------
# Camera and rasterisation
# --------------------------------------------------------------------------------------------------


def _yaw_quaternion(yaw: float) -> np.ndarray:
    """(w, x, y, z) rotation about z."""
    return np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])


def _heading(pose: str) -> float:
    """World yaw of the robot's forward axis: SIMPLER's base quaternion [0, 0, 0, 1] turns it to face -x."""
    return math.pi + ROBOT_POSES[pose][2]


def _base_to_world(pose: str, local: np.ndarray) -> np.ndarray:
    """Maps base-frame points/vectors (..., 3) (forward, left, up) to world coordinates, rotation only."""
    h = _heading(pose)
    c, s = math.cos(h), math.sin(h)
    rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return np.asarray(local) @ rotation.T


def _world_to_base(pose: str, vectors: np.ndarray) -> np.ndarray:
    """Inverse rotation of `_base_to_world`."""
    h = _heading(pose)
    c, s = math.cos(h), math.sin(h)
    rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return np.asarray(vectors) @ rotation


def _base_position(pose: str) -> np.ndarray:
    x, y, _ = ROBOT_POSES[pose]
    return np.array([x, y, 0.0])


@dataclass(frozen=True)
class _Camera:
    position: np.ndarray  # (3,) world
    rotation: np.ndarray  # (3, 3) rows: right, down, forward (OpenCV camera axes in world)
    intrinsic: np.ndarray  # (3, 3)
    width: int
    height: int

    @classmethod
    def mounted(cls, pose: str, config: DrawerStandInConfig) -> _Camera:
        h, pitch = _heading(pose), config.camera_pitch
        position = _base_position(pose) + _base_to_world(pose, [config.camera_forward, 0.0, 0.0])
        position[2] = config.camera_height
        forward = np.array([math.cos(h) * math.cos(pitch), math.sin(h) * math.cos(pitch), -math.sin(pitch)])
        right = np.array([math.sin(h), -math.cos(h), 0.0])
        down = np.cross(forward, right)
        f = config.focal_length
        intrinsic = np.array(
            [[f, 0.0, config.image_width / 2], [0.0, f, config.image_height / 2], [0, 0, 1.0]]
        )
        return cls(
            position, np.stack([right, down, forward]), intrinsic, config.image_width, config.image_height
        )

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points) - self.position) @ self.rotation.T

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (..., 2) (OpenCV: pixel centres at integers) and depths (...)."""
        camera_points = self.to_camera(points)
        depth = camera_points[..., 2]
        uv = camera_points[..., :2] / depth[..., None] * self.intrinsic[0, 0] + self.intrinsic[:2, 2]
        return uv, depth

    def pixel_rays(self) -> np.ndarray:
        """World-frame ray (H, W, 3) through every pixel centre, of unit depth along the optical axis."""
        v, u = np.mgrid[0 : self.height, 0 : self.width].astype(np.float64)
        f, cx, cy = self.intrinsic[0, 0], self.intrinsic[0, 2], self.intrinsic[1, 2]
        camera_rays = np.stack([(u - cx) / f, (v - cy) / f, np.ones_like(u)], axis=-1)
        return camera_rays @ self.rotation

    def extrinsic_cv(self) -> np.ndarray:
        extrinsic = np.eye(4)
        extrinsic[:3, :3] = self.rotation
        extrinsic[:3, 3] = -self.rotation @ self.position
        return extrinsic

    def cam2world_gl(self) -> np.ndarray:
        pose = np.eye(4)
        pose[:3, :3] = np.stack([self.rotation[0], -self.rotation[1], -self.rotation[2]], axis=1)
        pose[:3, 3] = self.position
        return pose


@dataclass
class _Canvas:
    rgb: np.ndarray  # (H, W, 3) uint8
    actor_ids: np.ndarray  # (H, W) int32
    mesh_ids: np.ndarray  # (H, W) int32
    material: CabinetMaterial | None = None  # paints the cabinet's faces (real appearance); None: flat albedo

    def copy(self) -> _Canvas:
        return _Canvas(self.rgb.copy(), self.actor_ids.copy(), self.mesh_ids.copy(), self.material)


@dataclass(frozen=True)
class _CabinetFace:
    """A face of the cabinet's material: its outward normal and how far its link has slid out along +x
    (object frame = world frame shifted back by that)."""

    normal: np.ndarray
    slide: float


def _shading_factor(normal: np.ndarray) -> float:
    return 0.62 + 0.38 * max(0.0, float(normal @ _LIGHT_DIRECTION))


def _shade(albedo: np.ndarray, normal: np.ndarray) -> np.ndarray:
    return np.clip(albedo * _shading_factor(normal), 0, 255)


def _inside_convex(uv: np.ndarray, us: np.ndarray, vs: np.ndarray) -> np.ndarray:
    """Boolean (len(vs), len(us)): which pixel centres lie inside the convex polygon uv (n, 2)."""
    points = uv.tolist()
    edges = list(zip(points, points[1:] + points[:1]))
    if sum(ax * by - bx * ay for (ax, ay), (bx, by) in edges) < 0:
        edges = [(b, a) for a, b in reversed(edges)]
    inside = np.ones((len(vs), len(us)), dtype=bool)
    for (ax, ay), (bx, by) in edges:
        inside &= (bx - ax) * (vs[:, None] - ay) - (by - ay) * (us[None, :] - ax) >= 0
    return inside


def _fill_polygon(
    canvas: _Canvas,
    camera: _Camera,
    corners: np.ndarray,
    colour: np.ndarray,
    actor_id: int,
    mesh_id: int,
    clip_corners: np.ndarray | None = None,
    cabinet_face: _CabinetFace | None = None,
) -> None:
    """Paints a planar convex polygon given by world corners (n, 3); optionally only inside a second one.
    A ``cabinet_face`` (an axis-aligned face) is painted by the canvas's material where it has one."""
    uv, depth = camera.project(corners)
    if np.any(depth < _NEAR_PLANE):
        return
    u0, v0 = max(math.ceil(uv[:, 0].min()), 0), max(math.ceil(uv[:, 1].min()), 0)
    u1, v1 = (
        min(math.floor(uv[:, 0].max()), camera.width - 1),
        min(math.floor(uv[:, 1].max()), camera.height - 1),
    )
    if u0 > u1 or v0 > v1:
        return
    us, vs = np.arange(u0, u1 + 1, dtype=np.float64), np.arange(v0, v1 + 1, dtype=np.float64)
    inside = _inside_convex(uv, us, vs)
    if clip_corners is not None:
        inside &= _inside_convex(camera.project(clip_corners)[0], us, vs)
    window = (slice(v0, v1 + 1), slice(u0, u1 + 1))
    if canvas.material is not None and cabinet_face is not None:
        colour = _paint_cabinet_face(canvas.material, camera, corners, cabinet_face, us, vs, inside, actor_id)
    canvas.rgb[window][inside] = colour.astype(np.uint8)
    canvas.actor_ids[window][inside] = actor_id
    canvas.mesh_ids[window][inside] = mesh_id


def _paint_cabinet_face(
    material: CabinetMaterial,
    camera: _Camera,
    corners: np.ndarray,
    face: _CabinetFace,
    us: np.ndarray,
    vs: np.ndarray,
    inside: np.ndarray,
    link_id: int,
) -> np.ndarray:
    """Material colours (n, 3) of the pixels ``inside`` the face: each pixel's ray meets the face's plane at
    a point that the material reads in the link's object frame."""
    rows, cols = np.nonzero(inside)
    f, cx, cy = camera.intrinsic[0, 0], camera.intrinsic[0, 2], camera.intrinsic[1, 2]
    camera_rays = np.stack([(us[cols] - cx) / f, (vs[rows] - cy) / f, np.ones(len(rows))], axis=1)
    rays = camera_rays @ camera.rotation  # world directions of unit depth
    axis = int(np.argmax(np.abs(face.normal)))
    depth = (corners[0, axis] - camera.position[axis]) / rays[:, axis]
    points = camera.position + depth[:, None] * rays - face.slide * PULL_DIRECTION
    return material.paint(points, axis, _shading_factor(face.normal), link_id, pixel_metres=depth / f)


_BOX_FACES: tuple[tuple[np.ndarray, tuple[int, ...]], ...] = tuple(
    (np.array(normal, dtype=np.float64), corners)
    for normal, corners in (
        ((1, 0, 0), (4, 5, 7, 6)),
        ((-1, 0, 0), (0, 2, 3, 1)),
        ((0, 1, 0), (2, 6, 7, 3)),
        ((0, -1, 0), (0, 1, 5, 4)),
        ((0, 0, 1), (1, 3, 7, 5)),
        ((0, 0, -1), (0, 4, 6, 2)),
    )
)


def _draw_box(
    canvas: _Canvas,
    camera: _Camera,
    low: np.ndarray,
    high: np.ndarray,
    albedo: np.ndarray,
    actor_id: int,
    mesh_id: int,
    cabinet_slide: float | None = None,
) -> None:
    """Paints the camera-facing faces of an axis-aligned box (they never overlap each other). A box of the
    cabinet's material gives ``cabinet_slide``, how far its link has slid out (see `_CabinetFace`)."""
    low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    corners = np.array(
        [[(low, high)[i >> 2][0], (low, high)[(i >> 1) & 1][1], (low, high)[i & 1][2]] for i in range(8)]
    )
    for normal, face in _BOX_FACES:
        face_corners = corners[list(face)]
        if normal @ (camera.position - face_corners[0]) > 0:
            cabinet_face = None if cabinet_slide is None else _CabinetFace(normal, cabinet_slide)
            _fill_polygon(
                canvas,
                camera,
                face_corners,
                _shade(albedo, normal),
                actor_id,
                mesh_id,
                cabinet_face=cabinet_face,
            )


def _draw_capsule(
    canvas: _Canvas,
    camera: _Camera,
    start: np.ndarray,
    end: np.ndarray,
    radius: float,
    albedo: np.ndarray,
    actor_id: int,
    mesh_id: int,
) -> None:
    """Paints a 3-D capsule as a shaded thick segment, clipped at the camera's near plane."""
    (a, b), depth = camera.project(np.stack([start, end]))
    if depth.max() < _NEAR_PLANE:
        return
    if depth.min() < _NEAR_PLANE:
        near, far = (0, 1) if depth[0] < depth[1] else (1, 0)
        t = (_NEAR_PLANE - depth[near]) / (depth[far] - depth[near])
        points = np.stack([start, end])
        points[near] = points[near] + t * (points[far] - points[near])
        (a, b), depth = camera.project(points)
    f = camera.intrinsic[0, 0]
    radius_a, radius_b = radius * f / depth[0], radius * f / depth[1]
    margin = max(radius_a, radius_b)
    u0, v0 = max(math.ceil(min(a[0], b[0]) - margin), 0), max(math.ceil(min(a[1], b[1]) - margin), 0)
    u1 = min(math.floor(max(a[0], b[0]) + margin), camera.width - 1)
    v1 = min(math.floor(max(a[1], b[1]) + margin), camera.height - 1)
    if u0 > u1 or v0 > v1:
        return
    # Work in the segment's own frame (along / across its axis), in float32: this is the per-step hot path.
    length = max(float(np.hypot(*(b - a))), 1e-6)
    axis_u, axis_v = (b - a) / length
    du = np.arange(u0, u1 + 1, dtype=np.float32)[None, :] - np.float32(a[0])
    dv = np.arange(v0, v1 + 1, dtype=np.float32)[:, None] - np.float32(a[1])
    along = du * np.float32(axis_u) + dv * np.float32(axis_v)
    across = dv * np.float32(axis_u) - du * np.float32(axis_v)
    t = np.minimum(np.maximum(along, 0.0), length)
    distance_sq = (along - t) ** 2 + across**2
    pixel_radius = np.float32(radius_a) + t * np.float32((radius_b - radius_a) / length)
    inside = distance_sq <= pixel_radius**2
    roundness = np.sqrt(np.clip(1.0 - distance_sq[inside] / pixel_radius[inside] ** 2, 0.0, 1.0))
    window = (slice(v0, v1 + 1), slice(u0, u1 + 1))
    canvas.rgb[window][inside] = np.clip(albedo * (0.55 + 0.45 * roundness[:, None]), 0, 255).astype(np.uint8)
    canvas.actor_ids[window][inside] = actor_id
    canvas.mesh_ids[window][inside] = mesh_id


# --------------------------------------------------------------------------------------------------
# The scene
# --------------------------------------------------------------------------------------------------


def _value_noise(shape: tuple[int, int], cell: int, seed: int) -> np.ndarray:
    """Smooth deterministic noise in [0, 1] (bilinear upsampling of a coarse random grid)."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((shape[0] // cell + 2, shape[1] // cell + 2))
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]] / cell
    y0, x0 = y.astype(int), x.astype(int)
    fy, fx = y - y0, x - x0
    top = coarse[y0, x0] * (1 - fx) + coarse[y0, x0 + 1] * fx
    bottom = coarse[y0 + 1, x0] * (1 - fx) + coarse[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


_TEXTURE_SIZE = 1024
_TEXTURE_METRES_PER_TEXEL = 0.004
_FLOOR_TEXTURE = 0.6 * _value_noise((_TEXTURE_SIZE, _TEXTURE_SIZE), 6, seed=1) + 0.4 * np.random.default_rng(
    2
).random((_TEXTURE_SIZE, _TEXTURE_SIZE))


@functools.lru_cache(maxsize=16)
def _background_canvas(pose: str, config: DrawerStandInConfig) -> _Canvas:
    """Floor, wall and desk seen from a start pose; shared between envs and never drawn on (callers copy)."""
    c, camera = config, _Camera.mounted(pose, config)
    rays = camera.pixel_rays()
    wall_x = c.cabinet_front_x - c.cabinet_depth - 0.35
    with np.errstate(divide="ignore", invalid="ignore"):
        t_floor = np.where(rays[..., 2] < 0, -camera.position[2] / rays[..., 2], np.inf)
        t_wall = np.where(rays[..., 0] < 0, (wall_x - camera.position[0]) / rays[..., 0], np.inf)
    is_floor = t_floor < t_wall
    t = np.where(is_floor, t_floor, t_wall)
    hit = camera.position + rays * t[..., None]

    texel = np.floor(hit[..., :2] / _TEXTURE_METRES_PER_TEXEL).astype(np.int64) % _TEXTURE_SIZE
    floor_grain = _FLOOR_TEXTURE[texel[..., 0], texel[..., 1]]
    distance = np.linalg.norm(hit[..., :2] - camera.position[:2], axis=-1)
    floor = (
        _FLOOR_ALBEDO
        * (0.78 + 0.3 * floor_grain[..., None])
        * np.clip(1.1 - 0.18 * distance, 0.6, 1.0)[..., None]
    )
    panel = (np.floor((hit[..., 1] + 5.0) / 0.6) % 2)[..., None]
    wall = (
        _WALL_ALBEDO
        * (0.8 + 0.15 * panel + 0.1 * floor_grain[..., None])
        * np.clip(hit[..., 2] / 1.2, 0.45, 1.0)[..., None]
    )
    rgb = np.where(is_floor[..., None], floor, wall)
    canvas = _Canvas(
        np.clip(rgb, 0, 255).astype(np.uint8),
        np.where(is_floor, GROUND_ID, 0).astype(np.int32),
        np.where(is_floor, GROUND_ID + _MESH_ID_OFFSET, 0).astype(np.int32),
    )
    # A dark desk to the robot's left of the cabinet, part of the background like SIMPLER's overlay.
    desk_y = c.cabinet_center_y - c.cabinet_width / 2 - 0.25
    _draw_box(
        canvas, camera, [wall_x, desk_y - 0.05, 0.0], [wall_x + 0.6, desk_y - 0.02, 0.70], _DESK_ALBEDO, 0, 0
    )
    _draw_box(
        canvas, camera, [wall_x, desk_y - 0.70, 0.66], [wall_x + 0.62, desk_y, 0.70], _DESK_ALBEDO, 0, 0
    )
    return canvas


def _drawer_front_extent(config: DrawerStandInConfig, index: int) -> tuple[float, float, float, float]:
    """(y_low, y_high, z_low, z_high) of the front panel of drawer ``index`` (DRAWERS order)."""
    half = config.cabinet_width / 2 - config.cabinet_wall - 0.004
    z_low, z_high = config.drawer_openings[index]
    return config.cabinet_center_y - half, config.cabinet_center_y + half, z_low + 0.004, z_high - 0.004


def _handle_position(config: DrawerStandInConfig, index: int, qpos: float) -> np.ndarray:
    """Centre of the handle bar of drawer ``index`` pulled out by ``qpos``."""
    _, _, z_low, z_high = _drawer_front_extent(config, index)
    x = config.cabinet_front_x + qpos + config.handle_protrusion * 0.8
    return np.array([x, config.cabinet_center_y, z_low + config.handle_height_fraction * (z_high - z_low)])


def _x_rectangle(x: float, y: tuple[float, float], z: tuple[float, float]) -> np.ndarray:
    return np.array([[x, y[0], z[0]], [x, y[1], z[0]], [x, y[1], z[1]], [x, y[0], z[1]]])


def _y_rectangle(y: float, x: tuple[float, float], z: tuple[float, float]) -> np.ndarray:
    return np.array([[x[0], y, z[0]], [x[1], y, z[0]], [x[1], y, z[1]], [x[0], y, z[1]]])


def _z_rectangle(z: float, x: tuple[float, float], y: tuple[float, float]) -> np.ndarray:
    return np.array([[x[0], y[0], z], [x[1], y[0], z], [x[1], y[1], z], [x[0], y[1], z]])


_UP, _OUT = np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0])


def _draw_cavity(canvas: _Canvas, camera: _Camera, config: DrawerStandInConfig, index: int) -> None:
    """The dark opening in the cabinet front behind drawer ``index``."""
    body_id = CABINET_LINK_IDS["body"]
    half = config.cabinet_width / 2 - config.cabinet_wall
    y = (config.cabinet_center_y - half, config.cabinet_center_y + half)
    cavity = _x_rectangle(config.cabinet_front_x, y, config.drawer_openings[index])
    _fill_polygon(canvas, camera, cavity, _CAVITY_ALBEDO, body_id, body_id + _MESH_ID_OFFSET)


def _draw_drawer(
    canvas: _Canvas, camera: _Camera, config: DrawerStandInConfig, index: int, qpos: float
) -> None:
    """The visible part of drawer ``index`` (outside the cabinet): tray, front panel and handle."""
    c = config
    link_id = CABINET_LINK_IDS[DRAWERS[index]]
    mesh_id = link_id + _MESH_ID_OFFSET
    y_low, y_high, z_low, z_high = _drawer_front_extent(c, index)
    front = c.cabinet_front_x + qpos
    panel_back = front - c.drawer_front_thickness
    tray_back = max(c.cabinet_front_x, front - c.drawer_tray_depth)
    if panel_back > tray_back + 1e-4:
        # Seen from above: the open top of the tray, its floor inside, and an outer side wall.
        ty, tz, inset = (y_low + 0.01, y_high - 0.01), (z_low + 0.01, z_high - 0.035), 0.012
        rim = _z_rectangle(tz[1], (tray_back, panel_back), ty)
        _fill_polygon(canvas, camera, rim, _shade(_CAVITY_ALBEDO * 1.3, _UP), link_id, mesh_id)
        floor = _z_rectangle(tz[0] + inset, (tray_back, panel_back), (ty[0] + inset, ty[1] - inset))
        floor_colour = _shade(_TRAY_INSIDE_ALBEDO, _UP)
        _fill_polygon(canvas, camera, floor, floor_colour, link_id, mesh_id, clip_corners=rim)
        for y_side, normal_y in ((ty[0], -1.0), (ty[1], 1.0)):
            if normal_y * (camera.position[1] - y_side) > 0:
                side = _y_rectangle(y_side, (tray_back, panel_back), tz)
                normal = np.array([0.0, normal_y, 0.0])
                colour = _shade(CABINET_ALBEDO, normal)
                _fill_polygon(
                    canvas, camera, side, colour, link_id, mesh_id, cabinet_face=_CabinetFace(normal, qpos)
                )
    visible_back = max(panel_back, c.cabinet_front_x)
    if front - visible_back > 1e-6:
        low, high = [visible_back, y_low, z_low], [front, y_high, z_high]
        _draw_box(canvas, camera, low, high, CABINET_ALBEDO, link_id, mesh_id, cabinet_slide=qpos)
    else:
        face = _x_rectangle(front, (y_low, y_high), (z_low, z_high))
        colour = _shade(CABINET_ALBEDO, _OUT)
        _fill_polygon(canvas, camera, face, colour, link_id, mesh_id, cabinet_face=_CabinetFace(_OUT, qpos))
    handle = _handle_position(c, index, qpos)
    half, bar, tip = c.handle_half_width, 0.006, front + c.handle_protrusion
    handle_mesh = _HANDLE_MESH_IDS[DRAWERS[index]]
    for y_leg in (handle[1] - half, handle[1] + half - 2 * bar):
        low, high = [front, y_leg, handle[2] - bar], [tip, y_leg + 2 * bar, handle[2] + bar]
        _draw_box(canvas, camera, low, high, _HANDLE_ALBEDO, link_id, handle_mesh)
    low, high = [tip - 2 * bar, handle[1] - half, handle[2] - bar], [tip, handle[1] + half, handle[2] + bar]
    _draw_box(canvas, camera, low, high, _HANDLE_ALBEDO, link_id, handle_mesh)


@functools.lru_cache(maxsize=16)
def _closed_cabinet_canvas(
    pose: str, config: DrawerStandInConfig, material: CabinetMaterial | None
) -> _Canvas:
    """Background plus the cabinet with every drawer closed; shared between envs, never drawn on."""
    canvas, camera = _background_canvas(pose, config).copy(), _Camera.mounted(pose, config)
    canvas.material = material
    body_id = CABINET_LINK_IDS["body"]
    y_half = config.cabinet_width / 2
    low = [config.cabinet_front_x - config.cabinet_depth, config.cabinet_center_y - y_half, 0.0]
    high = [config.cabinet_front_x, config.cabinet_center_y + y_half, config.cabinet_height]
    _draw_box(
        canvas, camera, low, high, CABINET_ALBEDO, body_id, body_id + _MESH_ID_OFFSET, cabinet_slide=0.0
    )
    for index in range(len(DRAWERS)):
        _draw_cavity(canvas, camera, config, index)
        _draw_drawer(canvas, camera, config, index, 0.0)
    return canvas


class _DrawerScene:
    """Renders the stand-in scene from one robot start pose: the cabinet (cached per drawer opening) over a
    static background, and the robot arm on top. ``material`` paints the cabinet (the real appearance)."""

    def __init__(
        self, pose: str, config: DrawerStandInConfig, material: CabinetMaterial | None = None
    ) -> None:
        self.pose, self.config, self.material = pose, config, material
        self.camera = _Camera.mounted(pose, config)
        self._cabinet_cache: OrderedDict[tuple[float, ...], _Canvas] = OrderedDict()

    def render_cabinet(self, drawer_qpos: np.ndarray) -> _Canvas:
        """Background plus cabinet (no robot) for these drawer openings; a small cache serves still frames."""
        key = tuple(float(q) for q in drawer_qpos)
        if key in self._cabinet_cache:
            self._cabinet_cache.move_to_end(key)
            return self._cabinet_cache[key]
        closed = _closed_cabinet_canvas(self.pose, self.config, self.material)
        canvas = closed.copy() if any(key) else closed
        # A pulled-out drawer can only hide drawers below it and never reaches into the image rows of the
        # drawers above, so redrawing the open ones bottom first over the closed cabinet is exact.
        for index in reversed(range(len(DRAWERS))):
            if key[index] > 0.0:
                _draw_cavity(canvas, self.camera, self.config, index)
                _draw_drawer(canvas, self.camera, self.config, index, key[index])
        self._cabinet_cache[key] = canvas
        if len(self._cabinet_cache) > 2:
            self._cabinet_cache.popitem(last=False)
        return canvas

    def render(self, drawer_qpos: np.ndarray, arm: _ArmPose | None) -> _Canvas:
        canvas = self.render_cabinet(drawer_qpos).copy()
        if arm is not None:
            for start, end, radius, albedo, link in sorted(
                arm.capsules(), key=lambda capsule: -self.camera.to_camera((capsule[0] + capsule[1]) / 2)[2]
            ):
                link_id = ROBOT_LINK_IDS[link]
                _draw_capsule(
                    canvas, self.camera, start, end, radius, albedo, link_id, link_id + _MESH_ID_OFFSET
                )
        return canvas


@dataclass(frozen=True)
class _ArmPose:
    """Robot arm geometry in world coordinates: shoulder, elbow and a two-finger gripper at the tcp."""

    shoulder: np.ndarray
    elbow: np.ndarray
    tcp: np.ndarray
    forward: np.ndarray  # gripper pointing direction (world)
    up: np.ndarray
    gripper_closedness: float

    @classmethod
    def reach(
        cls, pose: str, tcp: np.ndarray, gripper_closedness: float, config: DrawerStandInConfig
    ) -> _ArmPose:
        shoulder = _base_position(pose) + _base_to_world(pose, np.array(config.shoulder))
        forward = _base_to_world(pose, np.array([1.0, 0.0, 0.0]))
        up = np.array([0.0, 0.0, 1.0])
        wrist = tcp - 0.16 * forward
        to_wrist = wrist - shoulder
        distance = max(float(np.linalg.norm(to_wrist)), 1e-6)
        direction = to_wrist / distance
        upper, lower = config.upper_arm_length, config.forearm_length
        along = float(np.clip((upper**2 - lower**2 + distance**2) / (2 * distance), 0.0, upper))
        across = math.sqrt(max(upper**2 - along**2, 0.0))
        # The elbow bends out to the robot's right and a little down, away from the head camera.
        bend = _base_to_world(pose, np.array([0.0, -1.0, -0.3]))
        bend = bend - (bend @ direction) * direction
        bend /= max(float(np.linalg.norm(bend)), 1e-9)
        elbow = shoulder + along * direction + across * bend
        return cls(shoulder, elbow, tcp, forward, up, gripper_closedness)

    def capsules(self) -> list[tuple[np.ndarray, np.ndarray, float, np.ndarray, str]]:
        wrist, palm = self.tcp - 0.16 * self.forward, self.tcp - 0.055 * self.forward
        spread = 0.015 + 0.035 * (1.0 - self.gripper_closedness)
        fingers = [
            (palm + side * spread * self.up, self.tcp + 0.015 * self.forward + side * spread * self.up, name)
            for side, name in ((1.0, "finger_left"), (-1.0, "finger_right"))
        ]
        return [
            (self.shoulder, self.elbow, 0.06, _ARM_ALBEDO, "upper_arm"),
            (self.elbow, wrist, 0.05, _ARM_ALBEDO, "forearm"),
            (wrist, palm, 0.045, _GRIPPER_ALBEDO, "gripper"),
            *[(start, end, 0.012, _FINGER_ALBEDO, name) for start, end, name in fingers],
        ]

    @functools.cached_property
    def joint_positions(self) -> np.ndarray:
        """A rough 11-joint vector in the Google robot's joint order (torso, shoulder, bicep, elbow, forearm,
        wrist, gripper, two fingers, head pan, head tilt). Not a kinematic model of the real robot."""
        upper, lower = self.elbow - self.shoulder, self.tcp - self.elbow
        left = np.array([-self.forward[1], self.forward[0], 0.0])
        torso = math.atan2(float(upper @ left), float(upper @ self.forward))
        shoulder = math.atan2(float(upper[2]), float(np.linalg.norm(upper[:2])))
        cos_elbow = float(upper @ lower) / max(float(np.linalg.norm(upper) * np.linalg.norm(lower)), 1e-9)
        elbow = math.acos(float(np.clip(cos_elbow, -1.0, 1.0)))
        g = self.gripper_closedness
        return np.array([torso, shoulder, 0.0, elbow, 0.0, 0.0, g, g, g, 0.0, 0.0])


# --------------------------------------------------------------------------------------------------
# The environment
# --------------------------------------------------------------------------------------------------


def _box(shape: tuple[int, ...], low: float = -np.inf, high: float = np.inf) -> spaces.Box:
    return spaces.Box(low=low, high=high, shape=shape, dtype=np.float32)


class DrawerStandIn(gym.Env):
    """Stand-in for SIMPLER's ``{Open,Close}{Top,Middle,Bottom}DrawerCustomInScene-v0`` (NOT SIMPLER).

    Args:
        task: a `DrawerTask` or a task name such as ``"OpenTopDrawer"`` (see `DrawerTask.parse`).
        pose: robot start pose, ``"a0"`` ... ``"c2"``.
        camera: only ``"overhead_camera"`` (SIMPLER's policy camera) is rendered.
        add_segmentation: also return ``Segmentation`` (int32, 4 channels; channel 1 = actor/link ids).
        obs_mode: ``"rgbd"`` (SIMPLER's mode for these envs; no depth image here) or ``"state_dict"``
            (only ``agent`` and ``extra``, nothing rendered: fast runs of the scripted policies).
        render_mode: ``None`` or ``"rgb_array"``.
        config: geometry, camera and contact rules.
        appearance: ``"sim"`` (the simulator's flat-shaded look), ``"real"``: the miniature real world of
            the CPU experiment, the same scene with a textured cabinet, warm light, vignette, blur and sensor
            noise (`envs.appearance`); the sensor noise is fixed by the reset seed and the step; or
            ``"ceiling"``: the simulator's frame with the real world's pixels inside the cabinet's exact mask.
        noise_stream: which sensor-noise draws the real camera makes (``"real"``, ``"ceiling"``): 0 is the
            real world's own; another stream gives the same episodes under fresh noise (the experiment's floor).
        real_material: the style of ``configs/styles.yaml`` whose material the real cabinet is made of (``"real"``,
            ``"ceiling"``; default white marble): a piece of its procedural texture none of its exemplars shows.

    Actions: xyz delta in metres in the robot base frame (forward, left, up; the step moves at most
    ``config.max_translation_per_step``), an axis-angle delta that is ignored, and a gripper command added to
    the gripper's closedness in [0, 1] (positive closes, as RT-1's ``gripper_closedness_action``). Reward is
    ``float(info["success"])``; ``terminated`` is always False (a policy's terminate is the caller's business)
    and ``truncated`` turns True at step 113. ``reset(options={"drawer_qpos": (top, middle, bottom)})``
    overrides the start openings.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": CONTROL_FREQ}

    def __init__(
        self,
        task: str | DrawerTask = "OpenTopDrawer",
        pose: str = "a0",
        camera: str = CAMERA_NAME,
        add_segmentation: bool = True,
        obs_mode: str = "rgbd",
        render_mode: str | None = None,
        config: DrawerStandInConfig | None = None,
        appearance: str = "sim",
        noise_stream: int = 0,
        real_material: str = REAL_CABINET_STYLE,
    ) -> None:
        if camera != CAMERA_NAME:
            raise ValueError(
                f"the drawer stand-in renders only {CAMERA_NAME!r} (SIMPLER's policy camera), "
                f"not {camera!r}; "
                f"pass camera={CAMERA_NAME!r}"
            )
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"unsupported render_mode {render_mode!r}; use None or 'rgb_array'")
        self.task = task if isinstance(task, DrawerTask) else DrawerTask.parse(task)
        self.pose = check_pose(pose)
        self.camera_name = camera
        if obs_mode not in _OBS_MODES:
            raise ValueError(f"unsupported obs_mode {obs_mode!r}; the drawer stand-in offers {_OBS_MODES}")
        self.obs_mode = obs_mode
        self.add_segmentation = add_segmentation
        self.render_mode = render_mode
        self.config = config or DrawerStandInConfig()
        self.target_index = DRAWERS.index(self.task.drawer)
        self.cabinet_segmentation_ids: tuple[int, ...] = tuple(CABINET_LINK_IDS.values())
        self.robot_segmentation_ids: tuple[int, ...] = tuple(ROBOT_LINK_IDS.values())
        self.appearance = check_appearance(appearance)
        self.noise_stream = check_noise_stream(noise_stream)
        self.real_material = real_material_style(real_material)  # checked in every look; the sim's ignores it
        real_material = (
            real_cabinet_material(self.cabinet_segmentation_ids, self.real_material) if appearance != "sim" else None
        )
        self._real_camera = RealCamera() if appearance != "sim" else None
        # "ceiling" renders both worlds: the sim frame, and the real one whose cabinet pixels replace the sim's.
        self._scene = _DrawerScene(self.pose, self.config, real_material if appearance == "real" else None)
        self._real_scene = _DrawerScene(self.pose, self.config, real_material) if appearance == "ceiling" else None

        c = self.config
        rotation_limit = np.full(3, np.pi / 2, dtype=np.float32)
        self.action_space = spaces.Box(
            low=np.concatenate([-np.ones(3, np.float32), -rotation_limit, [-1.0]]).astype(np.float32),
            high=np.concatenate([np.ones(3, np.float32), rotation_limit, [1.0]]).astype(np.float32),
            dtype=np.float32,
        )
        camera_spaces = {"rgb": spaces.Box(0, 255, (c.image_height, c.image_width, 3), np.uint8)}
        if add_segmentation:
            camera_spaces["Segmentation"] = spaces.Box(
                0, _INT32_MAX, (c.image_height, c.image_width, 4), np.int32
            )
        observation_spaces = {
            "agent": spaces.Dict({"qpos": _box((11,)), "qvel": _box((11,)), "base_pose": _box((7,))}),
            "extra": spaces.Dict(
                {"tcp_pose": _box((7,)), "handle_pos": _box((3, 3)), "drawer_qpos": _box((3,))}
            ),
        }
        if obs_mode == "rgbd":
            observation_spaces["camera_param"] = spaces.Dict(
                {
                    CAMERA_NAME: spaces.Dict(
                        {
                            "extrinsic_cv": _box((4, 4)),
                            "cam2world_gl": _box((4, 4)),
                            "intrinsic_cv": _box((3, 3)),
                        }
                    )
                }
            )
            observation_spaces["image"] = spaces.Dict({CAMERA_NAME: spaces.Dict(camera_spaces)})
        self.observation_space = spaces.Dict(observation_spaces)

        self._drawer_qpos = np.zeros(len(DRAWERS))
        self._tcp = np.zeros(3)
        self._gripper = 0.0
        self._held_drawer: int | None = None
        self._elapsed_steps = 0
        self._arm: _ArmPose | None = None
        self._previous_joints = np.zeros(11)
        self._canvas: _Canvas | None = None
        self._noise_seed = 0
        self._has_reset = False

    # -- public helpers ---------------------------------------------------------------------------
    def get_language_instruction(self) -> str:
        return self.task.instruction

    @property
    def drawer_qpos(self) -> np.ndarray:
        """Joint positions of the (top, middle, bottom) drawers, metres pulled out."""
        return self._drawer_qpos.copy()

    def cabinet_mask(self) -> np.ndarray:
        """Boolean (H, W) cabinet mask of the current frame: all cabinet links, robot arm excluded; equal to
        ``np.isin(Segmentation[..., 1], cabinet_segmentation_ids)``, SIMPLER's recipe."""
        return np.isin(self._current_canvas().actor_ids, self.cabinet_segmentation_ids)

    def render_without_robot(self) -> np.ndarray:
        """The current frame with the robot left out (a debugging view; SIMPLER has no such call). In the real
        appearance: the cabinet's material, without the real lighting and camera."""
        self._require_reset("render_without_robot")
        return self._scene.render_cabinet(self._drawer_qpos).rgb.copy()

    def render(self) -> np.ndarray | None:
        if self.render_mode == "rgb_array":
            return self._current_canvas().rgb.copy()
        return None

    # -- gymnasium API ----------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        options = options or {}
        c = self.config
        if "drawer_qpos" in options:
            qpos = np.asarray(options["drawer_qpos"], dtype=np.float64)
            if qpos.shape != (len(DRAWERS),) or np.any(qpos < 0) or np.any(qpos > c.drawer_max_qpos):
                raise ValueError(
                    f"options['drawer_qpos'] must hold {len(DRAWERS)} openings (top, middle, bottom) in "
                    f"[0, {c.drawer_max_qpos}], got {options['drawer_qpos']!r}"
                )
            self._drawer_qpos = qpos.copy()
        else:
            self._drawer_qpos = np.zeros(len(DRAWERS))
            if self.task.action == "close":
                self._drawer_qpos[self.target_index] = CLOSE_START_QPOS
        jitter = self.np_random.uniform(-c.tcp_start_jitter, c.tcp_start_jitter, size=3)
        self._tcp = _base_position(self.pose) + _base_to_world(self.pose, np.array(c.tcp_start) + jitter)
        self._noise_seed = int(self.np_random.integers(0, 2**63))  # drawn last: the start state is unchanged
        self._gripper = 0.0
        self._held_drawer = None
        self._elapsed_steps = 0
        self._update_arm()
        self._previous_joints = self._arm.joint_positions
        self._has_reset = True
        return self._observation(), self._info()

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        self._require_reset("step")
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.shape != (7,) or not np.all(np.isfinite(action)):
            raise ValueError(f"expected a finite 7-D action (xyz delta, axis-angle, gripper), got {action!r}")
        action = np.clip(action, self.action_space.low, self.action_space.high)
        self._previous_joints = self._arm.joint_positions
        self._apply_gripper(float(action[6]))
        delta = _base_to_world(self.pose, action[:3])
        norm = float(np.linalg.norm(delta))
        if norm > self.config.max_translation_per_step:
            delta *= self.config.max_translation_per_step / norm
        self._move_tcp(delta)
        self._elapsed_steps += 1
        self._update_arm()
        info = self._info()
        truncated = self._elapsed_steps >= MAX_EPISODE_STEPS
        return self._observation(), float(info["success"]), False, truncated, info

    # -- dynamics ---------------------------------------------------------------------------------
    def _apply_gripper(self, command: float) -> None:
        c = self.config
        was_closed = self._gripper >= c.gripper_closed_threshold
        self._gripper = float(np.clip(self._gripper + command, 0.0, 1.0))
        closed = self._gripper >= c.gripper_closed_threshold
        if not closed:
            self._held_drawer = None
        elif not was_closed:
            tolerance = np.array(c.grasp_tolerance)
            for index in range(len(DRAWERS)):
                offset = np.abs(self._tcp - _handle_position(self.config, index, self._drawer_qpos[index]))
                if np.all(offset <= tolerance):
                    self._held_drawer = index
                    break

    def _move_tcp(self, delta: np.ndarray) -> None:
        c = self.config
        base = _base_position(self.pose)
        target_local = np.clip(
            _world_to_base(self.pose, self._tcp + delta - base), c.workspace_low, c.workspace_high
        )
        target = base + _base_to_world(self.pose, target_local)
        target[0] = max(target[0], c.cabinet_front_x + c.finger_clearance)

        if self._held_drawer is not None:
            index = self._held_drawer
            handle = _handle_position(self.config, index, self._drawer_qpos[index])
            if (
                abs(target[1] - handle[1]) > c.slip_distance[0]
                or abs(target[2] - handle[2]) > c.slip_distance[1]
            ):
                self._held_drawer = None
            else:
                pull = target[0] - self._tcp[0]
                new_qpos = float(np.clip(self._drawer_qpos[index] + pull, 0.0, c.drawer_max_qpos))
                target[0] = self._tcp[0] + (new_qpos - self._drawer_qpos[index])
                self._drawer_qpos[index] = new_qpos
                self._tcp = target
                return

        for index in range(len(DRAWERS)):
            y_low, y_high, z_low, z_high = _drawer_front_extent(self.config, index)
            margin = c.finger_clearance
            if not (
                y_low - margin <= target[1] <= y_high + margin
                and z_low - margin <= target[2] <= z_high + margin
            ):
                continue
            surface = c.cabinet_front_x + self._drawer_qpos[index] + margin
            if target[0] >= surface:
                continue
            came_from_front = self._tcp[0] >= surface - 1e-9
            if came_from_front:
                # Pressing the front pushes the drawer in, down to closed; the tcp stops at the front.
                self._drawer_qpos[index] = max(0.0, self._drawer_qpos[index] - (surface - target[0]))
                target[0] = max(target[0], c.cabinet_front_x + self._drawer_qpos[index] + margin)
            else:
                # Moving sideways into a pulled-out drawer: the drawer blocks the sideways motion.
                target[1:] = self._tcp[1:]
        self._tcp = target

    # -- observations -----------------------------------------------------------------------------
    def _update_arm(self) -> None:
        """Refreshes the arm after the tcp or gripper moved; the frame is rendered on first use."""
        self._arm = _ArmPose.reach(self.pose, self._tcp, self._gripper, self.config)
        self._canvas = None

    def _require_reset(self, call: str) -> None:
        if not self._has_reset:
            raise RuntimeError(
                f"DrawerStandIn.{call}() was called before reset(); call env.reset(seed=...) first"
            )

    def _current_canvas(self) -> _Canvas:
        self._require_reset("render")
        if self._canvas is None:
            self._canvas = self._scene.render(self._drawer_qpos, self._arm)
            if self._real_scene is not None:
                real = self._real_scene.render(self._drawer_qpos, self._arm)
                inside = np.isin(self._canvas.actor_ids, self.cabinet_segmentation_ids)
                self._canvas.rgb[inside] = self._expose(real.rgb)[inside]
            elif self._real_camera is not None:
                self._canvas.rgb = self._expose(self._canvas.rgb)
        return self._canvas

    def _expose(self, rgb: np.ndarray) -> np.ndarray:
        """The real camera's frame of a render; stream 0 keeps the noise seeds the real world always had."""
        seed = (self._noise_seed, self._elapsed_steps)
        return self._real_camera.expose(rgb, seed if self.noise_stream == 0 else (*seed, self.noise_stream))

    def _observation(self) -> dict[str, Any]:
        heading_quaternion = _yaw_quaternion(_heading(self.pose))
        joints = self._arm.joint_positions
        handles = np.stack([_handle_position(self.config, i, q) for i, q in enumerate(self._drawer_qpos)])
        f32 = np.float32
        observation: dict[str, Any] = {
            "agent": {
                "qpos": joints.astype(f32),
                "qvel": ((joints - self._previous_joints) * CONTROL_FREQ).astype(f32),
                "base_pose": np.concatenate([_base_position(self.pose), heading_quaternion]).astype(f32),
            },
            "extra": {
                "tcp_pose": np.concatenate([self._tcp, heading_quaternion]).astype(f32),
                "handle_pos": handles.astype(f32),
                "drawer_qpos": self._drawer_qpos.astype(f32),
            },
        }
        if self.obs_mode == "state_dict":
            return observation
        canvas = self._current_canvas()
        image: dict[str, np.ndarray] = {"rgb": canvas.rgb.copy()}
        if self.add_segmentation:
            segmentation = np.zeros((*canvas.actor_ids.shape, 4), dtype=np.int32)
            segmentation[..., 0] = canvas.mesh_ids
            segmentation[..., 1] = canvas.actor_ids
            image["Segmentation"] = segmentation
        camera = self._scene.camera
        observation["camera_param"] = {
            CAMERA_NAME: {
                "extrinsic_cv": camera.extrinsic_cv().astype(f32),
                "cam2world_gl": camera.cam2world_gl().astype(f32),
                "intrinsic_cv": camera.intrinsic.astype(f32),
            }
        }
        observation["image"] = {CAMERA_NAME: image}
        return observation

    def _info(self) -> dict[str, Any]:
        qpos = float(self._drawer_qpos[self.target_index])
        return {
            "success": bool(self.task.is_success(qpos)),
            "drawer_qpos": qpos,
            "elapsed_steps": self._elapsed_steps,
        }
