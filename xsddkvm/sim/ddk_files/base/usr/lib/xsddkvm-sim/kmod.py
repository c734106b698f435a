"""Simulated DDK kmod: depmod, modprobe, lsmod and modinfo over the simulated kbuild's text .ko
files (``name=``, ``vermagic=``, ``license=``, ``init_message=``, optional ``exit_message=``).

The "kernel" is the guest's ``uname -r``; loaded modules live in a JSON file and the kernel log in
a text file that the guest's dmesg prints. Messages are kmod's and the kernel's own wording
(kmod tools/modprobe.c, kernel/module.c check_modinfo).
"""

import json
import os
import subprocess
import sys
import time

ROOT = os.environ.get("XSDDKVM_SIM_ROOT", "")
STATE = ROOT + "/var/lib/xsddkvm-sim"
LOADED = STATE + "/modules.json"
KMSG = STATE + "/kmsg"
# The running kernel's vermagic suffix, as the simulated kbuild writes it into every .ko.
MAGIC_SUFFIX = " SMP mod_unload modversions"


def kernel():
    return subprocess.run(["uname", "-r"], capture_output=True, text=True).stdout.strip()


def moddir(release):
    return "/lib/modules/" + release


def norm(name):
    return name.replace("-", "_")


def log(message):
    os.makedirs(STATE, exist_ok=True)
    with open(KMSG, "a") as f:
        f.write(f"[{time.monotonic():12.6f}] {message}\n")


def read_ko(path):
    fields = {}
    with open(ROOT + path) as f:
        for line in f:
            key, sep, value = line.rstrip("\n").partition("=")
            if sep:
                fields[key] = value
    return fields


def loaded():
    try:
        with open(LOADED) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def save_loaded(mods):
    os.makedirs(STATE, exist_ok=True)
    with open(LOADED + ".new", "w") as f:
        json.dump(mods, f, indent=2)
    os.replace(LOADED + ".new", LOADED)


def dep_index(release):
    """name -> guest path, from modules.dep (what depmod wrote); empty before depmod."""
    index = {}
    try:
        with open(ROOT + moddir(release) + "/modules.dep") as f:
            for line in f:
                path = line.split(":", 1)[0].strip()
                if path:
                    name = os.path.basename(path)[: -len(".ko")]
                    index[norm(name)] = moddir(release) + "/" + path
    except FileNotFoundError:
        pass
    return index


def depmod(args):
    release = next((a for a in args if not a.startswith("-")), kernel())
    top = ROOT + moddir(release)
    if not os.path.isdir(top):
        print(
            f"depmod: ERROR: could not open directory {moddir(release)}: No such file or directory",
            file=sys.stderr,
        )
        return 1
    found = []
    for here, _dirs, files in os.walk(top):
        for name in files:
            if name.endswith(".ko"):
                found.append(os.path.relpath(os.path.join(here, name), top))
    with open(top + "/modules.dep", "w") as f:
        f.writelines(path + ":\n" for path in sorted(found))
    return 0


def modprobe(args):
    remove = any(a in ("-r", "--remove") for a in args)
    quiet = any(a in ("-q", "--quiet") for a in args)
    names = [a for a in args if not a.startswith("-")]
    if not names:
        print("modprobe: ERROR: missing parameters. See -h.", file=sys.stderr)
        return 1
    release = kernel()
    return (unload if remove else load)(names[0], release, quiet)


def load(name, release, quiet):
    mods = loaded()
    if norm(name) in mods:
        return 0
    path = dep_index(release).get(norm(name))
    if path is None:
        if not quiet:
            print(
                f"modprobe: FATAL: Module {name} not found in directory {moddir(release)}",
                file=sys.stderr,
            )
        return 1
    info = read_ko(path)
    running = release + MAGIC_SUFFIX
    if info.get("vermagic", "") != running:
        log(
            "{}: version magic '{}' should be '{}'".format(
                norm(name), info.get("vermagic", ""), running
            )
        )
        print(
            f"modprobe: ERROR: could not insert '{norm(name)}': Exec format error", file=sys.stderr
        )
        return 1
    mods[norm(name)] = {"path": path, "size": os.path.getsize(ROOT + path)}
    save_loaded(mods)
    if info.get("init_message"):
        log(info["init_message"])
    return 0


def unload(name, release, quiet):
    mods = loaded()
    entry = mods.pop(norm(name), None)
    if entry is None:
        if not quiet:
            print(f"modprobe: FATAL: Module {norm(name)} is not in kernel.", file=sys.stderr)
        return 1
    save_loaded(mods)
    message = (
        read_ko(entry["path"]).get("exit_message") if os.path.exists(ROOT + entry["path"]) else None
    )
    if message:
        log(message)
    return 0


def lsmod(_args):
    print("Module                  Size  Used by")
    for name, entry in sorted(loaded().items()):
        print(f"{name:<19} {entry['size']:>8}  0")
    return 0


def modinfo(args):
    field = None
    names = []
    rest = iter(args)
    for arg in rest:
        if arg in ("-F", "--field"):
            field = next(rest, None)
        elif arg.startswith("--field="):
            field = arg.split("=", 1)[1]
        elif not arg.startswith("-"):
            names.append(arg)
    if not names:
        print("modinfo: ERROR: missing module or filename.", file=sys.stderr)
        return 1
    status = 0
    for name in names:
        path = name if name.endswith(".ko") else dep_index(kernel()).get(norm(name))
        if path is None or not os.path.exists(ROOT + path):
            print(f"modinfo: ERROR: Module {name} not found.", file=sys.stderr)
            status = 1
            continue
        info = read_ko(path)
        shown = [
            ("filename", path),
            ("license", info.get("license", "")),
            ("name", info.get("name", "")),
            ("vermagic", info.get("vermagic", "")),
        ]
        for key, value in shown:
            if field is None:
                print(f"{key + ':':<15} {value}")
            elif key == field:
                print(value)
    return status


def dmesg(_args):
    try:
        with open(KMSG) as f:
            sys.stdout.write(f.read())
    except FileNotFoundError:
        pass
    return 0


if __name__ == "__main__":
    tools = {
        "depmod": depmod,
        "modprobe": modprobe,
        "lsmod": lsmod,
        "modinfo": modinfo,
        "dmesg": dmesg,
    }
    sys.exit(tools[sys.argv[1]](sys.argv[2:]))
