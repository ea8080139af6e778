"""Store commands for ``python -m tracer_core``: runs, show, export, delete, tag, rename, rebuild-store.

``add_store_commands(subparsers)`` adds them to an argparse sub-parser set; each sets ``func`` to a
handler ``func(args) -> int`` (exit code). ``python -m tracer_core.store.cli ...`` runs them standalone.
While a dashboard holds the DuckDB file these commands index the run folders in memory (see RunStore).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from .runstore import RunStore, StoreError

_LIST_COLUMNS = ["run_id", "name", "method", "teacher", "seed", "status", "steps_done", "total", "created"]


def _store(args) -> RunStore:
    store = RunStore(args.data_dir, refresh_interval_s=None)
    for note in store.notices:
        print(f"note: {note}", file=sys.stderr)
    return store


def _where(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items or ():
        if "=" not in item:
            raise StoreError(f"--where {item!r} must look like key=value (e.g. teacher.kind=wma)")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def cmd_runs(args) -> int:
    with _store(args) as store:
        df = store.list_runs(method=args.method, teacher=args.teacher, status=args.status, tags=args.tag or None,
                             config=_where(args.where) or None)
    if df.empty:
        print("no runs")
        return 0
    df = df[_LIST_COLUMNS].head(args.limit).rename(columns={"steps_done": "steps", "created": "created (UTC)"})
    df["created (UTC)"] = df["created (UTC)"].astype(str).str.slice(0, 19)
    print(df.to_string(index=False))
    return 0


def cmd_show(args) -> int:
    with _store(args) as store:
        run_id = store.resolve(args.run)
        run = store.get_run(run_id)
        summaries = store.summaries([run_id])
        evals = store.evaluations([run_id])
    for key in ("run_id", "name", "status", "method", "teacher", "seed", "tags", "steps_done", "total", "created",
                "started", "ended", "host", "pid", "error", "run_dir"):
        print(f"{key:>10}: {run[key]}")
    print("\nconfig:")
    print(json.dumps(json.loads(run["config"] or "{}"), indent=2))
    if not summaries.empty:
        print("\nseries (last / best / auc_normalized):")
        print(summaries[["name", "context", "n", "last", "best", "auc_normalized"]].to_string(index=False))
    if not evals.empty:
        last = evals[evals.step == evals.step.max()]
        print(f"\nevaluation at step {int(last.step.iloc[0])}:")
        print(last.pivot_table(index="dataset", columns="metric", values="value").to_string())
    return 0


def cmd_export(args) -> int:
    with _store(args) as store:
        ids = [store.resolve(r) for r in args.runs]
        for path in store.export(ids, args.format, args.out):
            print(path)
    return 0


def cmd_delete(args) -> int:
    empty = [r for r in args.runs if not r.strip()]
    if empty or not args.runs:   # "" would match every run id as a prefix
        print('error: give the run ids (or unique prefixes) to delete; an empty id ("") matches nothing',
              file=sys.stderr)
        return 2
    with _store(args) as store:
        ids = [store.resolve(r) for r in args.runs]
        if not args.yes:
            try:
                answer = input(f"Delete {len(ids)} run(s) and their folders ({', '.join(ids)})? [y/N] ")
            except EOFError:
                answer = ""
            if answer.strip().lower() not in ("y", "yes"):
                print("nothing deleted")
                return 1
        for run_id in ids:
            store.delete(run_id, force=args.force)
            print(f"deleted {run_id}")
    return 0


def cmd_tag(args) -> int:
    with _store(args) as store:
        run_id = store.resolve(args.run)
        (store.remove_tags if args.remove else store.add_tags)(run_id, args.tags)
        print(f"{run_id}: tags = {list(store.get_run(run_id)['tags'])}")
    return 0


def cmd_rename(args) -> int:
    with _store(args) as store:
        run_id = store.resolve(args.run)
        store.rename(run_id, args.name)
        print(f"{run_id}: name = {args.name}")
    return 0


def cmd_rebuild(args) -> int:
    with _store(args) as store:
        stats = store.rebuild()
    print(f"rebuilt: {stats['runs']} runs, {stats['rows']} rows")
    return 0


def _guard(fn):
    def run(args) -> int:
        try:
            return fn(args)
        except StoreError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    return run


def add_store_commands(subparsers) -> None:
    def add(name, fn, help):
        p = subparsers.add_parser(name, help=help, description=help)
        p.add_argument("--data-dir", default=None, help="data folder (default: $TRACER_DATA_DIR or <repo>/data)")
        p.set_defaults(func=_guard(fn))
        return p

    p = add("runs", cmd_runs, "list runs, newest first")
    p.add_argument("--method", action="append")
    p.add_argument("--teacher", action="append")
    p.add_argument("--status", action="append")
    p.add_argument("--tag", action="append", help="only runs with this tag (repeatable: all of them)")
    p.add_argument("--where", action="append", metavar="KEY=VALUE", help="config filter, e.g. teacher.beta=0.5")
    p.add_argument("--limit", type=int, default=50)
    add("show", cmd_show, "show one run: status, config, series summaries, last evaluation").add_argument(
        "run", help="run id, unique id prefix or unique name")
    p = add("export", cmd_export, "export runs and their series to CSV or Parquet")
    p.add_argument("runs", nargs="+")
    p.add_argument("--format", choices=("csv", "parquet"), default="csv")
    p.add_argument("--out", default=".", help="output folder (default: current folder)")
    p = add("delete", cmd_delete, "delete runs (folder and index rows)")
    p.add_argument("runs", nargs="+")
    p.add_argument("--yes", action="store_true", help="do not ask")
    p.add_argument("--force", action="store_true", help="also delete a run that looks live")
    p = add("tag", cmd_tag, "add (or --remove) tags on a run")
    p.add_argument("run")
    p.add_argument("tags", nargs="+")
    p.add_argument("--remove", action="store_true")
    p = add("rename", cmd_rename, "rename a run")
    p.add_argument("run")
    p.add_argument("name")
    add("rebuild-store", cmd_rebuild, "rebuild the DuckDB index from the run folders")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tracer_core.store.cli")
    add_store_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
