"""What /proc says about a process we started: RSS, CPU seconds, children.

Shared by tests/integration/big_blob_test.py (flat memory while relaying
1 GiB) and bench/ (RSS and CPU seconds per GiB of each proxy and peer).

RssSampler samples VmRSS every `interval` s in a thread and keeps the peak:
a measurement window, not synchronisation.
"""

import os
import threading

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    """VmRSS of `pid` in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def cpu_seconds(pid):
    """utime + stime of `pid` (all its threads) in seconds, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    fields = data[data.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def children(pid):
    """The pids whose parent is `pid` (e.g. nginx's workers under its master)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                data = f.read()
        except OSError:
            continue
        if int(data[data.rindex(")") + 2:].split()[1]) == pid:
            out.append(int(entry))
    return out


class RssSampler:
    """Samples the RSS of `target` every `interval` s in a thread; keeps the max.

    target: an object with rss_kib() (e.g. support.proxy.Proxy), a pid, or a
    list of pids (their RSS summed).
    """

    def __init__(self, target, interval=0.01):
        if hasattr(target, "rss_kib"):
            self._read = target.rss_kib
        elif isinstance(target, (list, tuple)):
            self._read = lambda: sum(rss_kib(p) for p in target)
        else:
            self._read = lambda: rss_kib(target)
        self.interval = interval
        self.max_kib = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.max_kib = max(self.max_kib, self._read())
                self.samples += 1
            except (OSError, RuntimeError):
                return
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
