#!/usr/bin/env python
"""Quickstart: the original ORRB client API, run against the shipped assets.

Builds an ``orrb.RemoteRenderer`` with 2 render server processes, renders a batch of
the shipped Dactyl states synchronously, then the same batch asynchronously through a
queue (``render_batch_async(batch, result_queue)`` puts the result, or the exception, on
``result_queue``), checks both give identical pixels, and writes the images as one PNG.

Usage: python examples/quickstart.py [--workers 2] [--batch 8] [--out quickstart.png]
"""

import argparse
import queue

import numpy as np

import orrb


def _build_renderer(num_gpus, num_workers, base_port):
    config = orrb.RemoteRendererConfig()
    config.camera_names = ['vision_cam_left']
    config.image_width = 200
    config.image_height = 200
    config.renderer_version = orrb.get_renderer_version()
    config.model_xml_path = 'dactyl.xml'
    config.model_mapping_path = 'dactyl.mapping'
    config.renderer_config_path = 'demo_keras.renderer_config.json'
    config.asset_basedir = orrb.utils.package_relative_path('assets')
    config.render_depth = False
    config.render_normals = False
    config.render_segmentation = False

    server_configs = orrb.utils.build_server_configs(num_gpus, num_workers, base_port, mpi_rank=0,
                                                     mpi_size=1)
    return config, orrb.RemoteRenderer('OrrbRenderer0', server_configs, config)


def render(workers: int, base_port: int, batch_size: int):
    """Renders one batch synchronously and then asynchronously; returns both responses."""
    config, renderer = _build_renderer(num_gpus=1, num_workers=workers, base_port=base_port)
    renderer.start()
    try:
        states = np.loadtxt(orrb.utils.package_relative_path('assets/states/qpos.csv'), delimiter=',')
        batch = {'qpos': states[:batch_size], 'seed': 0}

        # synchronous
        result = renderer.render_batch(batch)

        # asynchronous, the result comes back on a queue
        result_queue = queue.Queue()
        renderer.render_batch_async(batch, result_queue)
        async_result = result_queue.get()
        result_queue.task_done()
        if isinstance(async_result, Exception):  # a failed batch puts its exception on the queue
            raise async_result
    finally:
        renderer.shutdown()
    return result, async_result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="render server processes (default: %(default)s)")
    parser.add_argument("--base-port", type=int, default=15600, help="first server port (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=8, help="states per batch (default: %(default)s)")
    parser.add_argument("--out", default="quickstart.png", help="PNG with the batch's images (default: %(default)s)")
    args = parser.parse_args(argv)

    result, async_result = render(args.workers, args.base_port, args.batch)
    images = result['vision_cam_left']
    print(f"response keys: {sorted(result)}")
    print(f"vision_cam_left: {images.dtype} {list(images.shape)}")
    for key in sorted(result):
        if key.startswith('tracker_') and not key.endswith('_bbox'):
            print(f"{key} (entry 0): {np.round(result[key][0].astype(float), 3).tolist()}")
    identical = np.array_equal(images, async_result['vision_cam_left'])
    print(f"async result identical to the synchronous one: {identical}")

    from PIL import Image

    Image.fromarray(np.concatenate(list(images), axis=1)).save(args.out)
    print(f"wrote {args.out}")
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
