"""The runtime and operating system, as the properties PostHog's Python SDKs send with events."""

from __future__ import annotations

import functools
import platform
import sys
from typing import Any

__all__ = ["system_properties"]


def _os_info() -> tuple[str, str, str]:
    name = sys.platform
    if name.startswith("win"):
        return "Windows", platform.win32_ver()[0] or "", ""
    if name == "darwin":
        return "Mac OS X", platform.mac_ver()[0] or "", ""
    if name.startswith("linux"):
        try:
            release = platform.freedesktop_os_release()
        except OSError:  # no /etc/os-release (some minimal containers)
            return "Linux", "", ""
        return "Linux", release.get("VERSION_ID", ""), release.get("NAME", "")
    if name.startswith("freebsd"):
        return "FreeBSD", platform.release(), ""
    return name, platform.release(), ""


@functools.cache
def system_properties() -> dict[str, Any]:
    """``$python_runtime``, ``$python_version``, ``$os``, ``$os_version`` and ``$os_distro``.

    Computed once per process (it reads /etc/os-release on Linux).
    """
    os_name, os_version, os_distro = _os_info()
    info: dict[str, Any] = {
        "$python_runtime": platform.python_implementation(),
        "$python_version": "{}.{}.{}".format(*sys.version_info[:3]),
        "$os": os_name,
        "$os_version": os_version,
    }
    if os_distro:
        info["$os_distro"] = os_distro
    return info
