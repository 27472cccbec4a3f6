"""Each option is declared once: a Config field's default lives in config.py alone, every command
has one flag per field, and every "(default X)" that --help prints is the field's default."""

import argparse
import dataclasses
import re

import pytest

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


def test_every_field_is_one_declaration_that_builds_its_flag_and_its_check():
    """Each config field carries its help, choices and range (config.options.opt); every flag's help
    and choices are the field's, and validation rejects what the declared range or choices exclude."""
    from model_doctor.config.options import declared, flag_of
    from model_doctor.validation import validate

    cfg = Config()
    sections = {s.name: getattr(cfg, s.name) for s in dataclasses.fields(Config) if dataclasses.is_dataclass(getattr(cfg, s.name))}
    for name, section in sections.items():
        fields = {f.name for f in dataclasses.fields(section)}
        assert set(declared(section)) == fields, (name, sorted(fields - set(declared(section))))
    flags = 0
    for command, p in _commands().items():
        for a in p._actions:
            if "." not in a.dest:
                continue
            section, key = a.dest.split(".")
            o = declared(sections[section])[key][1]
            assert flag_of(key, o) in a.option_strings, (command, a.option_strings)
            assert a.help.startswith(o.help) or a.dest in ("model.name", "runtime.resume"), (command, a.dest)
            assert a.choices is None or list(a.choices) == list(o.choices), (command, a.dest)
            flags += 1
    assert flags > 100
    checked = 0
    for name, section in sections.items():
        for key, (_, o) in declared(section).items():
            bad = ["no such choice"] if o.choices else [o.lo - 1] if o.lo is not None else [o.hi + 1] if o.hi is not None else []
            for value in bad:
                c = Config()
                setattr(getattr(c, name), key, value)
                with pytest.raises(ValueError, match=f"^{name}.{key}="):
                    validate(c)
                checked += 1
    assert checked > 40


def test_the_space_method_choices_are_the_registry():
    from model_doctor.config import SPACE_METHOD_NAMES
    from model_doctor.treatment.selection import RULES
    from model_doctor.treatment.space import SPACE_METHODS

    assert set(SPACE_METHOD_NAMES) == set(SPACE_METHODS)
    from model_doctor.config import SELECT_RULES

    assert set(SELECT_RULES) == set(RULES) | {"auto", "groups"}   # the rule registry and the flag's choices agree
