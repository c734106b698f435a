"""Simulated modpost/ld for the DDK: turn each obj-m module under M into a text .ko."""

import pathlib
import re
import sys

kernel, moddir = sys.argv[1], pathlib.Path(sys.argv[2])
kbuild = moddir / "Kbuild"
if not kbuild.exists():
    kbuild = moddir / "Makefile"
modules = re.findall(r"obj-m\s*[:+]?=\s*(.+)", kbuild.read_text())
names = [word[:-2] for line in modules for word in line.split() if word.endswith(".o")]
if not names:
    sys.exit(f"modbuild: no obj-m modules in {kbuild}")
# printk(KERN_INFO "...") or pr_info("..."): what the module logs
MESSAGE = re.compile(r'(?:printk\s*\(\s*KERN_\w+\s*|pr_\w+\s*\(\s*)"([^"]*)"')


def message(text):
    found = MESSAGE.search(text)
    return found.group(1).replace(chr(92) + "n", "") if found else ""


for name in names:
    source = (moddir / f"{name}.c").read_text()
    init_part, _, exit_part = source.partition("__exit")
    licence = re.search(r'MODULE_LICENSE\s*\(\s*"([^"]*)"', source)
    (moddir / f"{name}.ko").write_text(
        "simulated kernel module (xsddkvm)\n"
        f"name={name}\n"
        f"vermagic={kernel} SMP mod_unload modversions\n"
        f"license={licence.group(1) if licence else 'unknown'}\n"
        f"init_message={message(init_part)}\n"
        f"exit_message={message(exit_part)}\n"
    )
    print(f"  LD [M]  {moddir / name}.ko")
