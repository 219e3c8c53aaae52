"""What the command lines share: one-line errors and argument types."""

import argparse


class ArgumentParser(argparse.ArgumentParser):
    """An `ArgumentParser` whose errors are one clear line and exit status 2
    (not the usage block)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def int_at_least(minimum):
    """An argument type: an integer of at least `minimum`."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            wanted = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}")
        return value

    return parse


positive_int = int_at_least(1)


def _number_list(kind, name):
    def parse(text):
        try:
            return [kind(v) for v in text.replace(",", " ").split()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be {name} separated by commas, got {text!r}"
            ) from None

    return parse


int_list = _number_list(int, "integers")
float_list = _number_list(float, "numbers")
