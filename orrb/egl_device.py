"""Finding the EGL device that renders on a given CUDA GPU.

MuJoCo's ``MUJOCO_EGL_DEVICE_ID`` indexes the list ``eglQueryDevicesEXT`` returns,
whose order often differs from CUDA's. The NVIDIA driver reports each EGL
device's CUDA index through the ``EGL_CUDA_DEVICE_NV`` attribute
(``EGL_NV_device_cuda``); :func:`egl_index_for_cuda_device` matches the two. It
must run before mujoco creates its first GL context (``orrb.pool.server`` does it
first thing).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os

__all__ = ["egl_cuda_devices", "egl_index_for_cuda_device", "nvidia_gpu_present"]

EGL_CUDA_DEVICE_NV = 0x323A
EGL_EXTENSIONS = 0x3055
_MAX_DEVICES = 32


def nvidia_gpu_present() -> bool:
    """True when an NVIDIA GPU device node exists (``/dev/nvidia0``, ...)."""
    return bool(glob.glob("/dev/nvidia[0-9]*"))


def _load_egl() -> ctypes.CDLL:
    name = ctypes.util.find_library("EGL") or "libEGL.so.1"
    return ctypes.CDLL(name)


def egl_cuda_devices() -> list[int | None]:
    """The CUDA index of each EGL device, in EGL order (``None``: not a CUDA device, e.g. llvmpipe).

    Raises:
        OSError: libEGL or the ``EGL_EXT_device_query``/``EGL_EXT_device_enumeration``
            entry points are missing.
    """
    egl = _load_egl()
    egl.eglGetProcAddress.restype = ctypes.c_void_p
    egl.eglGetProcAddress.argtypes = [ctypes.c_char_p]
    query_devices_ptr = egl.eglGetProcAddress(b"eglQueryDevicesEXT")
    query_attrib_ptr = egl.eglGetProcAddress(b"eglQueryDeviceAttribEXT")
    if not query_devices_ptr or not query_attrib_ptr:
        raise OSError("libEGL lacks eglQueryDevicesEXT/eglQueryDeviceAttribEXT (EGL_EXT_device_query)")
    query_devices = ctypes.CFUNCTYPE(ctypes.c_uint, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p),
                                     ctypes.POINTER(ctypes.c_int))(query_devices_ptr)
    query_attrib = ctypes.CFUNCTYPE(ctypes.c_uint, ctypes.c_void_p, ctypes.c_int,
                                    ctypes.POINTER(ctypes.c_ssize_t))(query_attrib_ptr)
    devices = (ctypes.c_void_p * _MAX_DEVICES)()
    count = ctypes.c_int(0)
    if not query_devices(_MAX_DEVICES, devices, ctypes.byref(count)):
        raise OSError("eglQueryDevicesEXT failed")
    out: list[int | None] = []
    for i in range(count.value):
        value = ctypes.c_ssize_t(-1)
        ok = query_attrib(devices[i], EGL_CUDA_DEVICE_NV, ctypes.byref(value))
        out.append(int(value.value) if ok and value.value >= 0 else None)
    return out


def egl_index_for_cuda_device(cuda_index: int) -> int | None:
    """The EGL device index (for ``MUJOCO_EGL_DEVICE_ID``) of CUDA device ``cuda_index``.

    ``CUDA_VISIBLE_DEVICES`` is honoured: ``cuda_index`` counts visible devices, as
    in CUDA, and is translated to the physical index the driver reports.

    Returns:
        the EGL index, or ``None`` when no EGL device reports that CUDA index.
    """
    physical = cuda_index
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        entries = [v.strip() for v in visible.split(",") if v.strip()]
        if cuda_index < len(entries) and entries[cuda_index].isdigit():
            physical = int(entries[cuda_index])
    for egl_index, cuda in enumerate(egl_cuda_devices()):
        if cuda == physical:
            return egl_index
    return None


def mujoco_selects_by_cuda_id() -> bool:
    """Whether the installed MuJoCo reads ``MUJOCO_EGL_DEVICE_ID`` as a CUDA device (a
    visible-device index or CUDA id, where the driver maps EGL devices to CUDA ones), as
    MuJoCo 4's EGL module does, rather than as an index into EGL's device list."""
    try:
        import mujoco.egl as mujoco_egl
    except Exception:  # no EGL here: nothing reads the variable
        return False
    return hasattr(mujoco_egl, "_select_egl_device")


def mujoco_egl_device_id(cuda_index: int) -> tuple[int, int] | None:
    """What ``MUJOCO_EGL_DEVICE_ID`` must hold for MuJoCo to render on CUDA device
    ``cuda_index`` (counting visible devices, as CUDA does), and that device's EGL index.

    Returns:
        ``(value, egl_index)``; ``None`` when no EGL device reports that CUDA device.
    """
    egl_index = egl_index_for_cuda_device(cuda_index)
    if egl_index is None:
        return None
    return (cuda_index if mujoco_selects_by_cuda_id() else egl_index), egl_index


if __name__ == "__main__":  # python -m orrb.egl_device: show the mapping
    try:
        print({i: c for i, c in enumerate(egl_cuda_devices())})
    except OSError as e:
        print(f"no EGL device query: {e}")
