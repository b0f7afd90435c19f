"""Frozen configuration, one section per stage. The CLI only overrides these defaults."""

from __future__ import annotations

from dataclasses import dataclass, field

from polyp_live.core.decision import DecisionConfig


@dataclass(frozen=True)
class SourceConfig:
    """Where frames come from and how they are delivered."""

    source: str = "0"
    fps: float = 0.0               # image folders: frames per second (0 = 30)
    realtime: bool = False         # pace a file at its native rate and drop late frames
    loop: bool = False
    max_frames: int = 0            # 0 = no limit
    reconnect_timeout: float = 10.0
    max_consecutive_corrupt: int = 50


@dataclass(frozen=True)
class RoiConfig:
    """Field of view: 'auto', 'full' or a fixed 'x,y,w,h'."""

    mode: str = "auto"
    fixed: tuple[int, int, int, int] | None = None
    refresh_frames: int = 30
    brightness: int = 20           # pixels darker than this are margin


@dataclass(frozen=True)
class SmoothingConfig:
    """Temporal smoothing of the probability map and hysteresis thresholds."""

    mode: str = "confidence"       # none | ema | confidence
    strength: float = 0.6          # 0 = follow each frame, towards 1 = keep the past
    threshold: float | None = None  # None = the model's default
    threshold_low: float | None = None  # None = threshold - 0.15
    scene_cut: float = 40.0        # mean absolute thumbnail difference that resets the state


@dataclass(frozen=True)
class PostprocessConfig:
    min_area: int = 300            # in source-frame pixels
    fill_holes: bool = True


@dataclass(frozen=True)
class RenderConfig:
    style: str = "both"            # fill | contour | both | heatmap
    hud: bool = True
    alpha: float = 0.35
    color: tuple[int, int, int] = (0, 255, 0)  # BGR
    # Live sources and --realtime: a mask computed on a frame captured longer ago than this is not
    # drawn (the HUD says the annotation is stale), so a stuck model never shows an old outline.
    max_annotation_age_ms: float = 250.0
    # Live: move an earlier frame's mask by the camera's global motion since (phase correlation).
    motion_shift: bool = False


@dataclass(frozen=True)
class OutputConfig:
    record: str | None = None
    save_masks: str | None = None
    stats_json: str | None = None
    snapshot_dir: str = "."
    record_codec: str = "libx264"  # H.264: plays in browsers and hospital viewers
    record_preset: str = "superfast"  # less CPU than veryfast, slightly larger files (docs/PERFORMANCE.md)
    # When WebRTC viewers get the recording's packets (--web): its frames reach them ~45 ms sooner at
    # p95 on two cores, for about 1.5 times the file at the same quality (docs/PERFORMANCE.md).
    shared_record_preset: str = "ultrafast"
    record_crf: int = 23
    record_gop_s: float = 1.0      # keyframe (and MP4 fragment) interval: what a killed process can lose
    record_queue: int = 32         # frames waiting for the encoder thread before the video path drops one
    report: str | None = None      # --report: the procedure report, .html or .json, written at the end of every run


@dataclass(frozen=True)
class PerformanceConfig:
    """How the stages share the CPU (see docs/PERFORMANCE.md for the measurements)."""

    opencv_threads: int = 1        # OpenCV's own pool: 1 keeps it from fighting the stage threads
    encoder_threads: int = 1       # libx264 threads for --record


@dataclass(frozen=True)
class PipelineConfig:
    source: SourceConfig = field(default_factory=SourceConfig)
    roi: RoiConfig = field(default_factory=RoiConfig)
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    # None = the operating point in the model's sidecar; a dict overrides some of its fields
    # (score_threshold, min_area_fraction, k, n), as the command-line options do.
    decision: DecisionConfig | dict | None = None
    performance: PerformanceConfig = field(default_factory=PerformanceConfig)
    queue_size: int = 2            # small: a file's frames wait less between stages
    appearance_gap_s: float = 0.5  # an appearance survives this long without its region
    display: bool = False
    web: bool = False              # --web: the browser view reads every rendered picture too
    quiet: bool = False
