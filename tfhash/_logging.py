"""TensorFlow's native start-up log lines, filtered as ``TF_CPP_MIN_LOG_LEVEL`` asks and written once.

Why they appear, twice, whatever ``TF_CPP_MIN_LOG_LEVEL`` says (TensorFlow 2.21, one process): two shared
objects that ``import tensorflow`` loads, ``libtensorflow_framework.so.2`` and the profiler plugin
``tensorflow/python/profiler/internal/_pywrap_profiler_plugin.so`` (loaded for ``tf.profiler.experimental``),
each carry their own copy of TensorFlow's platform code and of Abseil's logging. Each copy logs from a static
initialiser as it is loaded ("oneDNN custom operations are on", "Could not find cuda drivers"), before
``absl::InitializeLog()`` has run; Abseil then writes every message to stderr, after the banner "WARNING: All
log messages before absl::InitializeLog() is called are written to STDERR", at any severity. TensorFlow
applies ``TF_CPP_MIN_LOG_LEVEL`` only to what it logs later, and no environment variable reaches these lines.

`filtered_native_startup_log` therefore redirects the process's stderr (file descriptor 2) through a filter
while TensorFlow is first imported (``tfhash/__init__.py``), in tfhash's own command lines only (``python -m
tfhash.recipes.<name>``, ``python -m tfhash encode``; a program that imports tfhash is left alone): a record below ``TF_CPP_MIN_LOG_LEVEL`` (0: all,
1: no INFO, 2: no WARNING, 3: no ERROR; FATAL always) is dropped, a record repeated word for word is written
once, the Abseil banner only before a record that is written, and anything else (Python warnings, other
libraries) passes unchanged, in order; a line that follows a record without a record's header is taken as that
record's continuation. The filter is a small child process reading a pipe (this file run as a script with the
standard library only), so that whatever the import writes before a crash (a FATAL record) still reaches
stderr. Without ``os.dup2`` (not POSIX), with TensorFlow already imported, or when the child cannot start,
nothing is filtered.

`keras_step_retracing_quieted` is the other filter: it drops TensorFlow's warning "N out of the last M calls to
<function TensorFlowTrainer…> triggered tf.function retracing" while a recipe or a search trains and evaluates
one model after another. TensorFlow counts the traces of every Keras model's step functions together (its
detector is keyed by the step's code, which all models share), and each new model traces its steps afresh:
once for training, twice for predict (a full batch, then a last, shorter one, after which ``reduce_retracing``
generalises the shape). A search of short trials, or a recipe's second code length, reaches the warning's
threshold with no retracing inside any one model, and the warning's advice does not apply.
"""

import contextlib
import logging
import os
import re
import subprocess
import sys

#: an Abseil / glog record's first line: severity, MMDD hh:mm:ss.micros, thread id, file:line] message
_HEADER = re.compile(rb"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ (\S+:\d+\] .*)$", re.DOTALL)
_BANNER = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_SEVERITY = {b"I": 0, b"W": 1, b"E": 2, b"F": 3}


def min_log_level(environ=None):
    """``TF_CPP_MIN_LOG_LEVEL`` as an int in 0..3 (unset or not a number: 0, TensorFlow's default)."""
    value = (os.environ if environ is None else environ).get("TF_CPP_MIN_LOG_LEVEL", "0")
    try:
        return min(max(int(value), 0), 3)
    except ValueError:
        return 0


def filter_native_log(lines, write, level):
    """Writes ``lines`` (bytes, each with its line break) through ``write`` as described in the module.

    A line that is neither a record's first line nor the banner continues the record before it (e.g. the
    second line of TensorFlow's CPU-instructions notice); before any record it passes unchanged.

    Example:

    >>> out = []
    >>> filter_native_log([b"some text\\n", b"I0000 00:00:1.5  7 port.cc:153] oneDNN on\\n"], out.append, 1)
    >>> out
    [b'some text\\n']
    """
    seen, record = set(), None  # record: [severity, key, lines] of the record being read
    banner = {"pending": False, "written": False}

    def finish():
        if record is None:
            return
        severity, key, body = record
        text = (key, b"".join(body[1:]))
        if severity >= level and text not in seen:
            seen.add(text)
            if banner["pending"] and not banner["written"]:
                write(_BANNER + b"\n")
                banner["written"] = True
            for line in body:
                write(line)

    for line in lines:
        bare = line.rstrip(b"\r\n")
        header = _HEADER.match(bare)
        if bare == _BANNER or header:
            finish()
            record = None
            if header:
                record = [_SEVERITY[header[1]], header[2], [line]]
            else:
                banner["pending"] = True
        elif record is not None:
            record[2].append(line)
        else:
            write(line)
    finish()


def runs_tfhash_command(orig_argv=None):
    """Whether this process is one of tfhash's own command lines (``python -m tfhash…``: recipes, encode).

    Only they filter: a library should not redirect its user's stderr through a child process at import.
    """
    arguments = iter(list(sys.orig_argv if orig_argv is None else orig_argv)[1:])
    for argument in arguments:  # the interpreter's options, up to the script, -c or -m
        if argument == "-m":
            return next(arguments, "").split(".")[0] == "tfhash"
        if argument in ("-X", "-W"):
            next(arguments, None)
        elif argument == "-c" or not argument.startswith("-"):
            return False
    return False


@contextlib.contextmanager
def filtered_native_startup_log():
    """Filters what native code writes to stderr inside the ``with`` block (see the module docstring), in
    tfhash's own command lines only (`runs_tfhash_command`).

    Example (``tfhash/__init__.py``):

    >>> with filtered_native_startup_log():
    ...     import keras    # imports TensorFlow
    """
    child = saved = None
    if os.name == "posix" and "tensorflow" not in sys.modules and sys.executable and runs_tfhash_command():
        try:
            sys.stderr.flush()
            saved = os.dup(2)
            child = subprocess.Popen(
                [sys.executable, "-I", "-S", os.path.abspath(__file__), str(min_log_level())],
                stdin=subprocess.PIPE, stdout=saved, stderr=saved,
            )
            os.dup2(child.stdin.fileno(), 2)
        except (OSError, ValueError, AttributeError):  # no stderr descriptor, or the child did not start
            if child is not None:
                child.stdin.close()
                child.wait()
            if saved is not None:
                os.close(saved)
            child = saved = None
    try:
        yield
    finally:
        if child is not None:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            child.stdin.close()  # the child reads to the end, writes what is left and exits
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=10)


class _KerasStepRetracing(logging.Filter):
    """Drops TensorFlow's frequent-retracing warning when it is about a Keras model's step functions."""

    def filter(self, record):
        message = record.getMessage()
        return not ("triggered tf.function retracing" in message and "<function TensorFlowTrainer." in message)


@contextlib.contextmanager
def keras_step_retracing_quieted():
    """Inside the ``with`` block (or the decorated function), TensorFlow's logger drops its "triggered
    tf.function retracing" warning about Keras's step functions (``TensorFlowTrainer.make_predict_function``,
    ``_make_function``), which every new model traces afresh (see the module docstring); other warnings,
    about any other function's retracing among them, pass.

    Example (`tfhash.recipes.runner.fit_and_evaluate`, called once per trial or code length):

    >>> with keras_step_retracing_quieted():
    ...     model.fit(train, epochs=2)
    """
    logger = logging.getLogger("tensorflow")  # tf.get_logger(), without importing TensorFlow here
    keras_steps = _KerasStepRetracing()
    logger.addFilter(keras_steps)
    try:
        yield
    finally:
        logger.removeFilter(keras_steps)


def _main(argv):
    """The filter process: stdin to stdout, the level in ``argv[1]``."""
    out = sys.stdout.buffer

    def write(line):
        out.write(line)
        out.flush()

    filter_native_log(iter(sys.stdin.buffer.readline, b""), write, int(argv[1]))


if __name__ == "__main__":
    _main(sys.argv)
