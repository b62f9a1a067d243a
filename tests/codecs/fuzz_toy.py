"""A toy fuzz target for tests/codecs/test_fuzz.py's Worker test (imported by a child process: keep it light)."""

import os
import signal
import time

from gencomp_jax.codecs import bitstream


def toy_target():
    """A decoder that hangs on b"hang" and kills its own process on b"die"; refuses anything else."""
    def decode(data):
        if data == b"hang":
            signal.signal(signal.SIGALRM, signal.SIG_IGN)  # beat the in-process watchdog too
            time.sleep(600)
        if data == b"die":
            os.kill(os.getpid(), signal.SIGKILL)
        raise bitstream.BitstreamError("refused")
    return decode, [b"seed"]
