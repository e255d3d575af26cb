"""Drive ``qemu-system-riscv64`` as the oracle: type a script the way kprobesim's console input
does with a prompt (each line once the output since the previous one ends with the prompt and
the console has been quiet a moment) and return the console transcript."""

from __future__ import annotations

import os
import select
import subprocess
import time


def run_script(
    args: list[str], script: bytes, prompt: bytes, quiet: float = 0.5, timeout: float = 180.0
) -> bytes:
    """The console output of ``args`` (QEMU with ``-nographic``) answering ``script``."""
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdin is not None and proc.stdout is not None
    out = bytearray()
    fd = proc.stdout.fileno()
    lines = script.splitlines(keepends=True)
    typed_at = -1
    deadline = time.monotonic() + timeout
    try:
        last = time.monotonic()
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                out += chunk
                last = time.monotonic()
            elif len(out) > typed_at and out.endswith(prompt) and time.monotonic() - last > quiet:
                if not lines:
                    return bytes(out)
                proc.stdin.write(lines.pop(0))
                proc.stdin.flush()
                typed_at = len(out)
                last = time.monotonic()
        transcript = out.decode(errors="replace")
        raise TimeoutError(f"QEMU did not answer the script within {timeout} s; output:\n{transcript}")
    finally:
        proc.kill()
        proc.wait()
