"""Each option is declared once: a Config field's default lives in config.py alone, every command
has one flag per field, and every "(default X)" that --help prints is the field's default."""

import argparse
import dataclasses
import re

from model_doctor.cli.parser import build_parser
from model_doctor.config import Config


def _commands() -> dict[str, argparse.ArgumentParser]:
    parsers = {}

    def walk(p: argparse.ArgumentParser, name: str) -> None:
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for sub, child in a.choices.items():
                    walk(child, f"{name} {sub}".strip())
        parsers[name] = p

    walk(build_parser(), "")
    return parsers


def _field_default(dest: str):
    section, key = dest.split(".")
    return getattr(getattr(Config(), section), key)


def test_every_field_has_one_flag_per_command_and_no_second_default():
    fields = {f"{s.name}.{f.name}" for s in dataclasses.fields(Config) if dataclasses.is_dataclass(getattr(Config(), s.name))
              for f in dataclasses.fields(getattr(Config(), s.name))}
    for name, p in _commands().items():
        dests = [a.dest for a in p._actions if "." in a.dest]
        assert set(dests) <= fields, (name, sorted(set(dests) - fields))
        twice = {d for d in dests if dests.count(d) > 1}
        assert not twice, f"`model-doctor {name}` declares {sorted(twice)} more than once"
        for a in p._actions:   # the default is Config's: a flag that carries its own would shadow it
            if "." in a.dest:
                assert a.default is None, f"`model-doctor {name}` {a.option_strings} sets default={a.default!r}"


def test_every_help_default_is_the_fields_default():
    checked = 0
    for name, p in _commands().items():
        for a in p._actions:
            if "." not in a.dest or not a.help:
                continue
            shown = re.findall(r"\(default ([^;:)]+)\)", a.help)
            assert len(re.findall(r"\(default", a.help)) <= 1, f"{name} {a.option_strings}: two defaults in {a.help!r}"
            value = _field_default(a.dest)
            if shown:
                want = " ".join(map(str, value)) if isinstance(value, list) else str(value)
                assert shown[0] == want, f"{name} {a.option_strings}: help says {shown[0]!r}, Config has {want!r}"
                checked += 1
            elif value is not None and not isinstance(value, bool):
                assert "(default" in a.help, f"{name} {a.option_strings}: the default {value!r} is not shown"
    assert checked > 50   # the test reads the real parser, not an empty one
