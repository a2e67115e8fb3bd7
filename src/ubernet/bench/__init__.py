"""Benchmarks behind ``ubernet bench``: :mod:`.speed` (issue #3), :mod:`.memory` with its per-configuration
child process :mod:`._child` (issue #5), shared model/target/timer helpers in :mod:`.common`, PIL plots in
:mod:`.plot`."""
