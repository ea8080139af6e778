"""The one surface the dashboard pages use (``import tracer_core.api as api``), split by page family:

    common.py           services (one RunStore + one JobRunner per server), the runs frame with labels and
                        strategy names (from the method/teacher registries), run pickers
    launch.py           Launch + Home: presets, form values, validated configs, sweeps, the demo
    runs.py             Runs: queue, runs table with key results, rename/tag/delete, config diff, export
    live.py             Live dynamics: series catalogue, panel frames, seed bands, evaluations
    kernel.py           Teacher kernel explorer (pure numpy)
    calibration.py      Calibration; analysis_runs (which runs an analysis page can show)
    representations.py  Representations (CKA / SVCCA rows)
    checkpoints.py      a run's checkpoints and their three models (Attributions, Robustness)
    attributions.py     Attributions
    robustness.py       Robustness: attacks and the WiSE-FT curve
    frontier.py         ID vs OOD: runs on the plane, effective robustness, accuracy on the line
    outcome.py          Home / Live dynamics: the demo's outcome sentence
    tuning.py           Launch / ID vs OOD: the declared tuning grid as a sweep, the trial chosen on validation
    report.py           Runs: the self-contained HTML report (with the ID vs OOD section)

Returns pandas DataFrames, plotly figures (via :mod:`tracer_core.charts`) and small dataclasses. Imports no
torch, open_clip or streamlit at import time (``tests/test_architecture.py`` checks it): the model-based
functions import :mod:`tracer_core.analysis` on first use. Each module imports only ``common`` and modules
listed above it, never this package, so the graph has no cycle.
"""
from __future__ import annotations

from tracer_core.config import METHODS, TEACHER_KINDS, ConfigError, RunConfig
from tracer_core.reproduce import cli_command, override_args
from tracer_core.store.errors import StoreError

from .attributions import ATTR_METHODS, AttributionResult, attribution_maps
from .calibration import (CAL_METRICS, analysis_runs, calibration_steps, calibration_table, calibration_trend,
                          eval_sets_of, fold_top_bin, reliability_frame)
from .checkpoints import (NO_CHECKPOINT, CheckpointModels, OpenedCheckpoint, checkpoint_choices, checkpoints_for_run,
                          eval_set_info, load_checkpoint_models, open_checkpoint)
from .common import (METHOD_LABELS, TEACHER_HELP, TEACHER_LABELS, Services, ServicesError, data_dir, has_teacher,
                     job_counts, keep_valid, md, new_client_token, open_services, run_choices, run_config, run_labels,
                     strategy, teacher_label)
from .kernel import KernelView, kernel_view
from .launch import (DEMO_ENV, DEMO_OVERRIDES, DEMO_PRESETS, FORM_KEYS, MAX_SWEEP, build_config, demo_configs,
                     form_values, list_datasets, parse_list, presets, start_demo, submit_runs, sweep_configs)
from .live import (BAND_CENTERS, BAND_SPREADS, SMOOTHING_KINDS, TEACHER_PANELS, band_frame, eval_frame, live_frames,
                   see_runs, series_options, smoothing_spec, smoothing_text, step_bounds, zoom_range)
from .report import html_report
from .representations import SIM_KINDS, SIM_PAIRS, default_comparison, similarity_frame
from .robustness import robustness_table, wise_curve_frame
from .runs import (GROUP_KEYS, PAGE_SORTS, RESULT_DIRECTIONS, THROUGHPUT, cancel_run, config_diff, delete_run,
                   export_zip, group_metrics, jobs_table, page_caption, rename_run, runs_facets, runs_groups,
                   runs_page, runs_table, set_tags, summary_table)
from .frontier import (OOD_MEAN, endpoint_eval_samples, er_display, er_tables, known_wise, line_frontier,
                       line_table, ood_choices, plane_points, remember_wise, zero_shot_point)
from .outcome import demo_outcome
from .tuning import GRID_FILE, best_trials, grid_trials, trials_frame, tuning_grid, tuning_sweep_configs

__all__ = [
    "ATTR_METHODS", "BAND_CENTERS", "BAND_SPREADS", "SMOOTHING_KINDS", "smoothing_spec", "smoothing_text",
    "step_bounds", "zoom_range",
    "GROUP_KEYS", "PAGE_SORTS", "THROUGHPUT", "group_metrics", "page_caption", "runs_facets", "runs_groups",
    "runs_page", "AttributionResult", "CAL_METRICS", "CheckpointModels", "ConfigError", "DEMO_ENV",
    "DEMO_OVERRIDES", "DEMO_PRESETS", "FORM_KEYS", "KernelView", "MAX_SWEEP", "METHODS", "METHOD_LABELS",
    "NO_CHECKPOINT", "RESULT_DIRECTIONS", "RunConfig", "SIM_KINDS", "SIM_PAIRS", "Services", "ServicesError", "StoreError",
    "TEACHER_HELP", "TEACHER_KINDS", "TEACHER_LABELS", "TEACHER_PANELS", "analysis_runs", "attribution_maps",
    "band_frame", "build_config", "calibration_steps", "calibration_table", "calibration_trend", "cancel_run",
    "checkpoint_choices", "checkpoints_for_run", "cli_command", "config_diff", "data_dir", "delete_run",
    "default_comparison", "demo_configs", "eval_frame", "eval_set_info", "eval_sets_of", "export_zip", "fold_top_bin", "form_values",
    "has_teacher", "html_report", "md", "job_counts", "jobs_table", "keep_valid", "kernel_view", "list_datasets", "live_frames",
    "load_checkpoint_models", "new_client_token", "open_services", "override_args", "parse_list", "presets",
    "reliability_frame", "rename_run", "robustness_table", "run_choices", "run_config", "run_labels",
    "runs_table", "see_runs", "series_options", "set_tags", "similarity_frame", "start_demo", "strategy", "submit_runs",
    "summary_table", "sweep_configs", "teacher_label", "wise_curve_frame",
    "OOD_MEAN", "endpoint_eval_samples", "er_display", "er_tables", "known_wise", "line_frontier", "line_table",
    "ood_choices", "plane_points",
    "remember_wise", "zero_shot_point", "demo_outcome", "GRID_FILE", "best_trials", "grid_trials", "trials_frame",
    "tuning_grid", "tuning_sweep_configs", "OpenedCheckpoint", "open_checkpoint",
]
