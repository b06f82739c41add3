"""``orrb dataset --count N --out DIR``: a labelled, resumable dataset for vision training."""

from __future__ import annotations

from orrb.cli.common import add_scene_options, build_config, make_renderer, nonneg_int, positive_int

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

    config = build_config(args, depth=args.depth, segmentation=not args.no_segmentation)
    chain = dataset_chain(config, args.object)
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
