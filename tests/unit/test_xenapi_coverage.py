"""Every XenAPI message the client calls is served by the simulator (STYLE lesson 4).

The client's calls are found statically: attribute chains ``<x>.api.<Class>.<method>(...)`` and
``xenapi.<Class>.<method>(...)`` (``Async.`` kept), plus ``getattr(<x>.api, cls).<method>(...)``
inside a function, checked for each class literal its callers pass. Each is
dispatched to a real ``Api`` with a live session and dummy arguments, as many as the client
passes: whatever else fails, the simulator must know the method and accept that many arguments.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from xsddkvm.sim.api import Api
from xsddkvm.sim.errors import XapiError
from xsddkvm.sim.host import SimHost
from xsddkvm.sim.scenario import default_scenario

PACKAGE = Path(__file__).resolve().parents[2] / "xsddkvm"
PEER = "127.0.0.1"
DUMMY = "OpaqueRef:NULL"
# XenAPI.py turns ``xenapi.login_with_password`` into the ``session.`` message.
SDK_ALIASES = {"login_with_password": "session.login_with_password"}
# Client calls the simulator does not serve yet, each with the reason it may wait.
KNOWN_GAPS: dict[str, str] = {}


@dataclass(frozen=True)
class Call:
    method: str  # "VM.start", "Async.VM.clean_shutdown"
    nargs: int  # arguments after the session
    where: str  # file:line


@dataclass(frozen=True)
class DynamicCall:
    """``api = getattr(<x>.api, cls)`` then ``api.<method>(...)`` inside ``function``."""

    function: str
    class_param: int  # position of ``cls`` among the function's parameters
    method: str
    nargs: int
    where: str


def _chain(node: ast.expr) -> list[str]:
    """``a.b.c`` -> ["a", "b", "c"] (a chain may start at a call: ``f().b.c`` -> ["b", "c"])."""
    names: list[str] = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        names.append(node.id)
    return names[::-1]


def _api_class_param(node: ast.expr, params: list[str]) -> int | None:
    """For ``getattr(<x>.api, <param>)``: the index of ``<param>`` in ``params``."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "getattr"
        and len(node.args) == 2
        and isinstance(node.args[0], ast.Attribute)
        and node.args[0].attr == "api"
        and isinstance(node.args[1], ast.Name)
        and node.args[1].id in params
    ):
        return params.index(node.args[1].id)
    return None


def _dynamic_calls(tree: ast.AST, filename: str) -> Iterator[DynamicCall]:
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        params = [a.arg for a in fn.args.args]
        bound: dict[str, int] = {}
        for node in ast.walk(fn):
            if isinstance(node, ast.Assign):
                index = _api_class_param(node.value, params)
                for target in node.targets:
                    if index is not None and isinstance(target, ast.Name):
                        bound[target.id] = index
        for node in ast.walk(fn):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in bound
            ):
                where = f"{filename}:{node.lineno}"
                index = bound[node.func.value.id]
                yield DynamicCall(fn.name, index, node.func.attr, len(node.args), where)


def _static_calls(tree: ast.AST, filename: str) -> Iterator[Call]:
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        chain = _chain(node.func)
        for i, name in enumerate(chain[:-1]):
            # ``<x>.api.C.m``: ``api`` must follow something; ``xenapi.C.m`` may start a chain.
            if name not in ("api", "xenapi") or (name == "api" and i == 0):
                continue
            rest = chain[i + 1 :]
            if len(rest) == 1 and rest[0] in SDK_ALIASES:
                rest = SDK_ALIASES[rest[0]].split(".")
            if len(rest) == 2 or (len(rest) == 3 and rest[0] == "Async"):
                yield Call(".".join(rest), len(node.args), f"{filename}:{node.lineno}")
            break


def _calls_of(dyn: DynamicCall, filename: str, tree: ast.AST) -> Iterator[ast.Call]:
    """Calls of ``dyn.function`` in ``tree``: by plain name in its own module or where it is
    imported by name, as ``<module>.<function>`` elsewhere."""
    module = Path(dyn.where.split(":")[0]).stem
    own = Path(filename).stem == module
    imported = own or any(
        isinstance(node, ast.ImportFrom)
        and (node.module or "").split(".")[-1] == module
        and any(alias.name == dyn.function for alias in node.names)
        for node in ast.walk(tree)
    )
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id == dyn.function and imported:
            yield node
        elif (
            isinstance(func, ast.Attribute)
            and func.attr == dyn.function
            and _chain(func)[-2:-1] == [module]
        ):
            yield node


def _resolve(dynamic: list[DynamicCall], trees: Mapping[str, ast.AST]) -> Iterator[Call]:
    """One call per class literal passed to a function that calls a class chosen at run time;
    a class that is not a literal cannot be checked, so it yields an unknown class ``?``."""
    for dyn in dynamic:
        for filename, tree in trees.items():
            for node in _calls_of(dyn, filename, tree):
                arg = node.args[dyn.class_param] if dyn.class_param < len(node.args) else None
                value = arg.value if isinstance(arg, ast.Constant) else None
                cls = value if isinstance(value, str) else "?"
                where = f"{dyn.where} via {filename}:{node.lineno}"
                yield Call(f"{cls}.{dyn.method}", dyn.nargs, where)


def calls_in(sources: dict[str, str]) -> list[Call]:
    """The XenAPI calls the modules ``{filename: source}`` make."""
    trees = {name: ast.parse(text, name) for name, text in sources.items()}
    found = [c for name, tree in trees.items() for c in _static_calls(tree, name)]
    dynamic = [d for name, tree in trees.items() for d in _dynamic_calls(tree, name)]
    found += _resolve(dynamic, trees)
    return sorted(set(found), key=lambda c: (c.method, c.nargs, c.where))


@functools.lru_cache(maxsize=1)
def client_calls() -> list[Call]:
    """Every XenAPI call in ``xsddkvm/`` outside ``sim/``."""
    sources = {
        str(path.relative_to(PACKAGE.parent)): path.read_text(encoding="utf-8")
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).parts[0] != "sim"
    }
    return calls_in(sources)


def unserved(api: Api, session: str, call: Call) -> str | None:
    """Why the simulator would not serve ``call``, or None if it knows it with that arity."""
    params: list[object] = [DUMMY] * call.nargs
    if call.method != "session.login_with_password":
        params.insert(0, session)
    try:
        api.dispatch(call.method, params, PEER)
    except XapiError as exc:
        if exc.code in ("MESSAGE_METHOD_UNKNOWN", "MESSAGE_PARAMETER_COUNT_MISMATCH"):
            return f"{call.method} ({call.nargs} args, {call.where}): {exc.description}"
    return None


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[Api, str]]:
    scenario = default_scenario()
    host = SimHost(scenario, tmp_path / "sim", port=443)
    try:
        session = host.login(scenario.credentials.username, scenario.credentials.password)
        yield Api(host), session
    finally:
        host.close()


def test_scanner_finds_the_client_calls() -> None:
    methods = {c.method for c in client_calls()}
    # One of each form: plain, Async, SDK alias, logout, class chosen at run time, sim.*.
    assert {"VM.start", "Async.VM.clean_shutdown", "session.login_with_password"} <= methods
    assert {"session.logout", "VDI.set_other_config", "sim.inspect"} <= methods
    assert not any(m.startswith("?.") for m in methods)
    assert len(methods) > 40


def test_every_client_call_is_served(api: tuple[Api, str]) -> None:
    sim_api, session = api
    problems = {}
    for call in client_calls():
        problem = unserved(sim_api, session, call)
        if problem:
            problems[call.method] = problem
    assert set(problems) - set(KNOWN_GAPS) == set(), problems
    # A gap fixed in the simulator must leave KNOWN_GAPS too.
    assert set(KNOWN_GAPS) <= set(problems)


def test_a_call_the_simulator_lacks_is_caught(api: tuple[Api, str]) -> None:
    sim_api, session = api
    source = (
        "def f(xs, cls):\n"
        "    xs.api.VM.make_coffee(xs.vm)\n"
        "    xs.api.VM.get_record(xs.vm, 'extra')\n"
        "    xs.api.VM.get_record(xs.vm)\n"
        "    api = getattr(xs.api, cls)\n"
        "    api.polish(1)\n"
        "f(None, 'VDI')\n"
        "f(None, name)\n"
    )
    calls = calls_in({"made_up.py": source})
    problems = [p for p in (unserved(sim_api, session, c) for c in calls) if p]
    assert [p.split(" (")[0] for p in problems] == [
        "?.polish",
        "VDI.polish",
        "VM.get_record",
        "VM.make_coffee",
    ]
    assert "MESSAGE_PARAMETER_COUNT_MISMATCH" in problems[2]
    assert "MESSAGE_METHOD_UNKNOWN" in problems[3]
