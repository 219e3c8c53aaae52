"""What the command lines share: one-line errors, argument types, and how
a command ends when its output's reader has gone."""

import argparse
import errno
import importlib.util
import os
import re
import socket
import sys

from keras_resnet.backend import configured_backend

# Keras' backends and the package each one imports.
KERAS_BACKENDS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch",
                  "numpy": "numpy", "openvino": "openvino"}
# Keras' backends without `fit` (inference only).
INFERENCE_ONLY_BACKENDS = ("numpy", "openvino")


class ArgumentParser(argparse.ArgumentParser):
    """An `ArgumentParser` whose errors are one clear line and exit status 2
    (not the usage block), which reads "-1e-3" as a number, and which checks
    the Keras backend (`$KERAS_BACKEND` or keras.json's) with the arguments,
    before Keras loads: Keras' own error is a traceback. A command that
    `trains` also refuses a backend Keras cannot train on."""

    def __init__(self, *args, trains=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.trains = trains
        # Python 3.11 and 3.12 take "-1e-3" for a flag ("expected one
        # argument"); read it as the number it is, as Python 3.13 does.
        self._negative_number_matcher = re.compile(r"^-\.?\d")

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")

    def parse_known_args(self, args=None, namespace=None):
        parsed = super().parse_known_args(args, namespace)
        backend = configured_backend()
        problem = (self.trains and training_backend_problem(backend)) or keras_backend_problem(backend)
        if problem:
            self.error(problem)
        return parsed


def run_command(main, prog):
    """Runs a command's `main()` and returns its exit status for `sys.exit`.

    Output into a pipe whose reader has ended (`... | head`) stops the
    command as it stops Unix tools, with exit status 141 (128 + SIGPIPE, as
    a shell reports one that SIGPIPE ended), not a `BrokenPipeError`
    traceback from wherever it last printed (Keras' progress bar, a table),
    and with one line on stderr where that is still open. A run stopped so
    resumes like any other (`train.py` with the same command).
    """
    try:
        status = main()
        sys.stdout.flush()  # what is still buffered fails here, not at exit
        return status
    except BrokenPipeError:
        # Python flushes stdout again as it exits, which would fail the same way.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        try:
            print(f"{prog}: stopped: its output's reader closed the pipe.", file=sys.stderr)
        except OSError:  # stderr went into the same pipe (2>&1)
            pass
        return 141


def listen_problem(host, port):
    """Why a server could not listen on `host:port` here, or None: an
    `OSError` whose `strerror` (or text) says why; its `errno` is
    `EADDRINUSE` where another program holds the port. `host` None is every
    interface.

    It binds each address the host resolves to as gRPC's servers do (JAX's
    coordinator, KerasTuner's oracle), with `SO_REUSEADDR` and without
    `SO_REUSEPORT`, which lets a second server share a port without a word.
    """
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as e:  # a host of no machine
        return e if isinstance(e, OSError) else OSError(str(e))
    bound, problem = False, None
    for family, kind, protocol, _, address in found:  # gRPC listens on each
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
                bound = True
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    return e
                problem = e
    return None if bound else problem


def path(text):
    """A path flag's value with `~` expanded: the shell leaves it as typed in
    `--flag=~/runs` (and in quotes), where it would make a folder named "~"."""
    return os.path.expanduser(text)


def keras_backend_problem(backend):
    """Why Keras cannot load `backend` (a `BackendSetting`), or None."""
    if backend.default:
        return None
    if backend.name not in KERAS_BACKENDS:
        named = f"KERAS_BACKEND={backend.name!r}" if backend.keras_json is None else str(backend)
        return (f"{named} is not a Keras backend; use one of "
                f"{', '.join(KERAS_BACKENDS)}, or {backend.back_to_tensorflow}.")
    if importlib.util.find_spec(KERAS_BACKENDS[backend.name]) is None:
        package = KERAS_BACKENDS[backend.name]
        return (f"{backend} needs the {package} package, which is not installed: "
                f"pip install {package}, or choose another backend.")
    return None


def training_backend_problem(backend):
    """Why Keras cannot train on `backend` (a `BackendSetting`), or None:
    its numpy and openvino backends have no `fit` (a NotImplementedError
    from inside it, after the data has loaded)."""
    if backend.name in INFERENCE_ONLY_BACKENDS:
        return (f"{backend} cannot train (Keras has no `fit` for it): use "
                f"tensorflow, jax or torch, or {backend.back_to_tensorflow}.")
    return None


def int_in_range(minimum, maximum=None):
    """An argument type: an integer of at least `minimum` (and at most
    `maximum`, if given)."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum or (maximum is not None and value > maximum):
            if maximum is not None:
                wanted = f"an integer from {minimum} to {maximum}"
            else:
                wanted = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}")
        return value

    return parse


positive_int = int_in_range(1)
port = int_in_range(1, 65535)


def _number_list(kind, name, minimum=None):
    def parse(text):
        try:
            values = [kind(v) for v in text.replace(",", " ").split()]
        except ValueError:
            values = None
        if not values or (minimum is not None and min(values) < minimum):
            raise argparse.ArgumentTypeError(
                f"must be {name} separated by commas, got {text!r}"
            )
        return values

    return parse


positive_int_list = _number_list(int, "positive integers", minimum=1)
float_list = _number_list(float, "numbers")
