"""Shell completion scripts for bash and zsh, written from the CLI's own argparse parser (`visiontrain completion`).

Written here rather than with a completion library: the parser is walked once (commands, options, which options take
a value, their choices) and the few value kinds visiontrain has are completed by name: models, datasets (names and
folders), presets, folders, files. No dependency, and the script stays static, so a completion never starts Python.
"""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field

from ._registry import DATASETS, MODELS, PRESETS
from .windows import WINDOW_PRESETS

SHELLS = ("bash", "zsh")
FOLDERS = {"data_dir", "runs_dir", "resume", "data"}  # arguments that name a folder (others may name files too)
FILES = {"split_file", "class_names", "weights"}  # config fields (metavar TEXT) that name a file
NUMBERS = {"N", "X"}  # metavars of numeric values: nothing to complete


@dataclass
class Option:
    flags: list[str]
    help: str
    takes_value: bool
    words: list[str] = field(default_factory=list)  # the values it takes, where they are a known list
    kind: str = "file"  # what a value is when it is not a word of `words`: file, folder, dataset, none


@dataclass
class Command:
    name: str
    help: str
    options: list[Option]
    positionals: list[Option]


def commands_of(parser: argparse.ArgumentParser) -> tuple[list[Option], list[Command]]:
    """(the top-level options, the commands with their options and positional arguments)."""
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in subparsers._choices_actions}
    commands = [Command(name, helps.get(name) or "", [_option(a) for a in sub._actions if a.option_strings],
                        [_option(a) for a in sub._actions if not a.option_strings])
                for name, sub in subparsers.choices.items()]
    return [_option(a) for a in parser._actions if a.option_strings], commands


def _option(action: argparse.Action) -> Option:
    takes_value = action.nargs != 0 and not isinstance(action, (argparse._HelpAction, argparse._VersionAction))
    words, kind = [], "file"
    if action.choices is not None:
        words, kind = [str(choice) for choice in action.choices], "none"
    elif isinstance(action.metavar, str) and re.fullmatch(r"\{[\w.+,-]+\}", action.metavar):  # a Literal config field
        words, kind = action.metavar[1:-1].split(","), "none"
    elif action.dest == "model":
        words, kind = [*MODELS.names(), *MODELS.prefixes()], "none"
    elif action.dest == "preset":
        words, kind = PRESETS.names(), "none"
    elif action.dest == "dataset":
        words, kind = DATASETS.names(), "dataset"
    elif action.dest == "device":
        words, kind = ["auto", "cpu", "cuda", "mps"], "none"
    elif action.dest == "window":
        words, kind = list(WINDOW_PRESETS), "none"
    elif action.dest in FOLDERS:
        kind = "folder"
    elif action.dest in FILES:
        kind = "file"
    elif action.metavar in NUMBERS or action.metavar in ("NAME", "TEXT") or action.type in (int, float):
        kind = "none"  # numbers, names, free text
    text = (action.help or "").replace("%(default)s", str(action.default)).replace("%%", "%")
    text = text.replace("%(choices)s", ", ".join(words))
    return Option(list(action.option_strings) or [action.dest], text, takes_value, words, kind)


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    top, commands = commands_of(parser)
    return {"bash": _bash, "zsh": _zsh}[shell](parser.prog, top, commands)


# -- bash ------------------------------------------------------------------------------------------------------------
_BASH = '''# {prog} completion for bash (written by `{prog} completion bash`). Load it from ~/.bashrc with
#   eval "$({prog} completion bash)"
# or save it once: {prog} completion bash > ~/.local/share/bash-completion/completions/{prog}
_{fn}_values() {{  # the completions of a value of kind $1 (words $2) for the word being typed
    local kind=$1 words=$2 cur=$3
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
    case $kind in
        file) COMPREPLY+=($(compgen -f -- "$cur")) ;;
        folder|dataset) COMPREPLY+=($(compgen -d -- "$cur")) ;;
    esac
}}

_{fn}() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}} command="" position=0 i
    for ((i = 1; i < COMP_CWORD; i++)); do  # the command: the first word that is not an option
        case ${{COMP_WORDS[i]}} in -*) ;; *) command=${{COMP_WORDS[i]}}; break ;; esac
    done
    if [[ -z $command ]]; then
        COMPREPLY=($(compgen -W "{top_words}" -- "$cur"))
        return
    fi
    case "$command $prev" in  # the value of an option
{value_cases}
    esac
    if [[ $cur == -* ]]; then
        case $command in
{option_cases}
        esac
        return
    fi
    for ((i = i + 1; i < COMP_CWORD; i++)); do  # which positional argument is being typed
        case "$command ${{COMP_WORDS[i]}}" in
{skip_cases}
            "$command "-*) ;;
            *) position=$((position + 1)) ;;
        esac
    done
    case "$command $position" in
{positional_cases}
    esac
}}
complete -o filenames -o bashdefault -F _{fn} {prog}
'''


def _bash(prog: str, top: list[Option], commands: list[Command]) -> str:
    fn = re.sub(r"\W", "_", prog)
    value_cases, option_cases, skip_cases, positional_cases = [], [], [], []
    for command in commands:
        by_values: dict[tuple[str, str], list[str]] = {}
        for option in command.options:
            if option.takes_value:
                by_values.setdefault((option.kind, " ".join(option.words)), []).extend(option.flags)
        for (kind, words), flags in by_values.items():
            patterns = "|".join(f'"{command.name} {flag}"' for flag in flags)
            value_cases.append(f'        {patterns}) _{fn}_values {kind} "{words}" "$cur"; return ;;')
            skip_cases.append(f'            {patterns}) i=$((i + 1)) ;;')  # the option's value is no positional
        flags = " ".join(flag for option in command.options for flag in option.flags)
        option_cases.append(f'            {command.name}) COMPREPLY=($(compgen -W "{flags}" -- "$cur")) ;;')
        for position, argument in enumerate(command.positionals):
            many = argument.flags[0] in ("inputs", "run_dirs")  # nargs="+": every later word too
            pattern = f'"{command.name} {position}"' + (f'|"{command.name} "*' if many else "")
            positional_cases.append(f'        {pattern}) _{fn}_values {argument.kind} "{" ".join(argument.words)}" '
                                    '"$cur" ;;')
    top_words = " ".join([*(flag for option in top for flag in option.flags), *(c.name for c in commands)])
    return _BASH.format(prog=prog, fn=fn, top_words=top_words, value_cases="\n".join(value_cases),
                        option_cases="\n".join(option_cases), skip_cases="\n".join(skip_cases),
                        positional_cases="\n".join(positional_cases))


# -- zsh -------------------------------------------------------------------------------------------------------------
_ZSH = '''#compdef {prog}
# {prog} completion for zsh (written by `{prog} completion zsh`). Save it as _{prog} in a folder of $fpath:
#   {prog} completion zsh > "${{fpath[1]}}/_{prog}"
# or load it from ~/.zshrc (after compinit): eval "$({prog} completion zsh)"
_{fn}() {{
    local curcontext=$curcontext state line
    typeset -A opt_args
    _arguments -C \\
{top_specs}
        '1:command:->command' \\
        '*::argument:->argument'
    case $state in
        command)
            local -a commands
            commands=(
{command_list}
            )
            _describe -t commands '{prog} command' commands ;;
        argument)
            case $line[1] in
{command_cases}
            esac ;;
    esac
}}
{dataset_fn}() {{  # a dataset: a name, or an image folder
    _alternative 'datasets:dataset:({datasets})' 'folders:folder:_files -/'
}}
if [[ $funcstack[1] == _{fn} ]]; then
    _{fn} "$@"
else
    compdef _{fn} {prog}
fi
'''


_ZSH_DATASET = "_visiontrain_dataset"  # the script's function that completes a dataset


def _zsh(prog: str, top: list[Option], commands: list[Command]) -> str:
    fn = re.sub(r"\W", "_", prog)
    command_list = "\n".join(f"                {_quote(c.name + ':' + _text(c.help))}" for c in commands)
    cases = []
    for command in commands:
        specs = [_zsh_option(option) for option in command.options]
        for position, argument in enumerate(command.positionals):
            many = argument.flags[0] in ("inputs", "run_dirs")
            specs.append(_quote(f"{'*' if many else position + 1}:{argument.flags[0]}:{_zsh_action(argument)}"))
        body = " \\\n                        ".join(specs)
        cases.append(f"                {command.name})\n                    _arguments \\\n"
                     f"                        {body} ;;")
    top_specs = "\n".join(f"        {_zsh_option(option)} \\" for option in top)
    return _ZSH.format(prog=prog, fn=fn, top_specs=top_specs, command_list=command_list,
                       command_cases="\n".join(cases), dataset_fn=_ZSH_DATASET, datasets=" ".join(DATASETS.names()))


def _zsh_option(option: Option) -> str:
    description = f"[{_text(option.help)}]"
    value = f":{option.flags[-1].lstrip('-')}:{_zsh_action(option)}" if option.takes_value else ""
    if len(option.flags) == 1:
        return _quote(option.flags[0] + description + value)
    exclusive = "(" + " ".join(option.flags) + ")"
    return _quote(exclusive) + "{" + ",".join(option.flags) + "}" + _quote(description + value)


def _zsh_action(option: Option) -> str:
    words = " ".join(re.sub(r"([\\\s:()'\"])", r"\\\1", word) for word in option.words)
    kinds = {"file": "_files", "folder": "_files -/", "dataset": "_files -/", "none": ""}
    if option.kind == "dataset":  # a name or a folder: the script's own function (_ZSH)
        return f"{_ZSH_DATASET}"
    if option.words:
        return f"({words})"
    return kinds[option.kind] or " "


def _text(help_text: str) -> str:
    """A help text as one short description: its first clause, no characters zsh's specs give meaning to."""
    text = re.split(r"[;(]| -- ", help_text)[0].strip() or help_text
    text = text.replace("[", "(").replace("]", ")").replace(":", " -").replace("\\", "")
    return text if len(text) <= 70 else text[:67].rstrip() + "..."


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"
