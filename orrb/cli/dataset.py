"""``orrb dataset --count N --out DIR``: a labelled, resumable dataset for vision training."""

from __future__ import annotations

from orrb.cli.common import (CommandError, add_scene_options, build_config, make_renderer, nonneg_int, output_folder,
                             positive_float, positive_int)

__all__ = ["add_parser", "dataset_chain", "run"]


def add_parser(subparsers) -> None:
    dataset = subparsers.add_parser(
        "dataset", help="write a labelled, resumable dataset for vision training",
        description="Renders randomized images of sampled states (hand joints uniform in their ranges, the "
                    "cube near its rest position with a uniformly random orientation) into DIR/shard_*.npz "
                    "with per-image labels: tracker positions and boxes, the cube's pose, segmentation with "
                    "class names in DIR/manifest.json (format documented there and in orrb.dataset). "
                    "Loads with numpy alone. Rerunning the same command continues an interrupted run and "
                    "never rewrites finished shards.")
    dataset.add_argument("--count", type=positive_int, required=True, metavar="N",
                         help="number of states; each is rendered by every camera")
    dataset.add_argument("--out", required=True, metavar="DIR",
                         help="output folder (created; resumed if it holds the same dataset)")
    dataset.add_argument("--shard-size", type=positive_int, default=64, metavar="N",
                         help="states per shard file (default: %(default)s)")
    dataset.add_argument("--seed", type=nonneg_int, default=0, metavar="S",
                         help="dataset seed: states and render seeds derive from it and the item index "
                              "(default: %(default)s)")
    dataset.add_argument("--object", default="cube", metavar="BODY",
                         help="body whose pose is labelled and tracked when the config has no Tracker "
                              "(default: %(default)s)")
    dataset.add_argument("--depth", action="store_true", help="also store depth (float32 metres)")
    dataset.add_argument("--no-segmentation", action="store_true", help="do not store segmentation masks")
    dataset.add_argument("--stop-after", type=nonneg_int, default=None, metavar="K",
                         help="stop after writing K new shards (build a dataset in chunks; rerun to continue)")
    dataset.add_argument("--quiet", action="store_true", help="no progress bar")
    add_scene_options(dataset, "dactyl.renderer_config.json", 200)
    cluster = dataset.add_argument_group("Ray cluster (the ray extra)")
    cluster.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                         help="render on a Ray cluster with --workers N worker actors, each writing its own shards "
                              "(the same dataset, array for array); ADDRESS as for ray.init (default: RAY_ADDRESS, "
                              "a cluster started with 'ray start' on this machine, else Ray on this machine). "
                              "--out must be a folder every node sees")
    cluster.add_argument("--gpus-per-worker", type=positive_float, default=None, metavar="G",
                         help="GPUs Ray gives each worker with --ray; it renders on the one assigned (default: 0)")
    dataset.set_defaults(run=run)


def dataset_chain(config, object_name: str):
    """The chain for a dataset: the config's, plus a Tracker of the object when it has none."""
    from orrb.config import RendererConfig

    chain = (RendererConfig.load(config.resolve(config.renderer_config_path))
             if config.renderer_config_path else RendererConfig())
    if not any(c.type == "Tracker" for c in chain):
        tracker = RendererConfig()
        tracker.add("Tracker", "dataset_tracker", camera_names=",".join(config.camera_names),
                    tracked_object_names=object_name, tracked_object_aliases=object_name)
        chain = chain.merged(tracker)
    return chain


def run(args) -> int:
    from orrb.dataset import DatasetWriter

    args.out = output_folder(args.out)
    config = build_config(args, depth=args.depth, segmentation=not args.no_segmentation)
    chain = dataset_chain(config, args.object)
    if args.ray is not None:
        return run_on_ray(args, config, chain)
    if args.gpus_per_worker is not None:
        raise CommandError("--gpus-per-worker applies to the workers of --ray only: add --ray [ADDRESS] --workers N")
    with make_renderer(args, config, chain) as renderer:
        writer = DatasetWriter(renderer, config, args.out, args.count, args.shard_size, args.seed,
                               object_name=args.object, renderer_config_json=chain.to_dict(),
                               class_names=renderer.class_names)
        before = len(writer.pending_shards())
        written = writer.run(progress=not args.quiet, stop_after=args.stop_after)
    left = before - written
    state = "complete" if left == 0 else f"{left} shards still to write (rerun the same command to continue)"
    print(f"wrote {written} shards to {writer.directory} ({writer.num_shards} in all, "
          f"{writer.count} items); dataset {state}")
    return 0


def run_on_ray(args, config, chain) -> int:
    """``orrb dataset ... --ray [ADDRESS] --workers N``: the dataset rendered by N Ray worker actors."""
    if args.servers:
        raise CommandError("give either --ray (workers on a Ray cluster) or --servers, not both")
    if args.workers < 1:
        raise CommandError(f"--ray renders with --workers N actors: give --workers N >= 1 (got {args.workers})")
    from orrb.extras import import_optional

    ray = import_optional("ray", "orrb dataset --ray")
    from orrb.ray import render_dataset

    joined = not ray.is_initialized()
    if joined:  # in a program that already runs Ray (tests, notebooks), its runtime is used
        ray.init(address=args.ray or None, log_to_driver=False)
    try:
        written, writer = render_dataset(config, chain, args.out, args.count, shard_size=args.shard_size,
                                         seed=args.seed, object_name=args.object, workers=args.workers,
                                         gpus_per_worker=args.gpus_per_worker or 0, progress=not args.quiet,
                                         stop_after=args.stop_after)
    finally:
        if joined:
            ray.shutdown()
    left = len(writer.pending_shards())
    state = "complete" if left == 0 else f"{left} shards still to write (rerun the same command to continue)"
    print(f"wrote {written} shards to {writer.directory} with {args.workers} Ray workers ({writer.num_shards} in "
          f"all, {writer.count} items); dataset {state}")
    return 0
