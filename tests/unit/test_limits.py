"""Connection bounds from the open-file limit, the gRPC options, and the limit raised at start."""
from __future__ import annotations

import resource
import subprocess
import sys

import pytest

from tea.errors import ConfigError
from tea.http.limits import connection_bounds, edge_limits, grpc_options
from tea.settings import load


def test_the_default_bounds_share_what_the_reserve_leaves() -> None:
    settings = load({}, env={})
    http, grpc = connection_bounds(settings, 1024)
    assert (http, grpc) == (540, 192)  # (1024 - 256) × ¾ × 15/16, and × ¼
    limits = edge_limits(settings, 1024)
    assert http + limits.max_refusing + grpc + settings.fd_reserve <= 1024
    assert connection_bounds(settings, 1_000_000) == (10_000, 2_500)  # memory, not descriptors, bounds these
    assert connection_bounds(settings, 100) == (16, 4)  # a tiny limit still serves someone (and is logged)


def test_settings_override_the_bounds() -> None:
    settings = load({}, env={"TEA_HTTP__MAX_CONNECTIONS": "300", "TEA_OTLP__GRPC_MAX_CONNECTIONS": "50",
                             "TEA_HTTP__MAX_HEADER_BYTES": "32KiB", "TEA_HTTP__HEADER_TIMEOUT_S": "2.5"})
    assert connection_bounds(settings, 1024) == (300, 50)
    options = dict(grpc_options(settings, 1024))
    assert options["grpc.max_metadata_size"] == options["grpc.absolute_max_metadata_size"] == 32 * 1024
    assert options["grpc.server_handshake_timeout_ms"] == 2500
    assert options["grpc.max_allowed_incoming_connections"] == 50
    assert options["grpc.max_concurrent_streams"] == 100
    with pytest.raises(ConfigError, match="TEA_HTTP__MAX_HEADER_BYTES"):
        load({}, env={"TEA_HTTP__MAX_HEADER_BYTES": "100"})


def test_the_open_file_limit_is_raised_toward_the_hard_limit() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    code = ("import resource; from tea.http.limits import raise_open_files_limit as r; "
            "print(*r(), resource.getrlimit(resource.RLIMIT_NOFILE)[0])")

    def at(soft: int, hard_limit: int) -> list[int]:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard_limit)))
        return [int(n) for n in out.stdout.split()]

    small_hard = min(hard, 2048) if hard != resource.RLIM_INFINITY else 2048
    assert at(256, small_hard) == [256, small_hard, small_hard]  # up to the hard limit
    if hard == resource.RLIM_INFINITY or hard > 65536:
        assert at(256, hard) == [256, 65536, 65536]  # at most 65536
