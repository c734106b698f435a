#!/usr/bin/env python3
"""Simulated DDK build-supplemental-pack: the options and checks of supp-pack-build
(scripts/build-supplemental-pack.py, xcp/supplementalpack.py setup), writing a real pack:
an ISO 9660 image with XS-REPOSITORY, XS-PACKAGES and the RPMs, ``<label>.iso.md5`` and
``<label>.metadata.md5``. Product brand and version come from the guest's ddk.json, as the
real one takes them from xcp.branding."""

import hashlib
import io
import json
import optparse
import os
import re
import subprocess
import sys
import tarfile
import xml.dom.minidom

import pycdlib

MANDATORY = ("output", "vendor_code", "vendor_name", "label", "text", "version")
IDENT = re.compile(r"^[A-Za-z0-9._-]+$")  # supplementalpack.py _valid_ident


def parse(argv):
    parser = optparse.OptionParser(usage="%prog [options] <rpm>...")
    parser.add_option("--output", help="output directory")
    parser.add_option("--vendor-code", help="originator (vendor code)")
    parser.add_option("--vendor-name", help="vendor name")
    parser.add_option("--label", help="pack name")
    parser.add_option("--text", help="pack description")
    parser.add_option("--version", help="pack version")
    parser.add_option("--build", help="pack build number")
    parser.add_option("--mem", type="int", help="memory requirement in MB")
    parser.add_option("--homogeneous", action="store_true", default=False)
    parser.add_option("--no-iso", action="store_false", dest="iso", default=True)
    parser.add_option("--tarball", action="store_true", default=False)
    parser.add_option("--reorder", action="store_true", dest="reorder", default=True)
    parser.add_option("--noreorder", action="store_false", dest="reorder")
    parser.add_option("--xcp", action="store_true", default=False)
    parser.add_option("--repo-data", help=optparse.SUPPRESS_HELP)
    options, rpms = parser.parse_args(argv)
    if options.repo_data:
        sys.exit("Arbitrary metadata no longer supported")
    missing = [name for name in MANDATORY if not getattr(options, name)]
    if missing or not rpms:
        parser.print_help(sys.stderr)
        what = "--" + missing[0].replace("_", "-") if missing else "at least one package"
        print(f"\nError: {what} is required", file=sys.stderr)
        sys.exit(1)
    for value in (options.vendor_code, options.label):
        if not IDENT.match(value):
            print(f"Error: invalid originator/name: {value}", file=sys.stderr)
            sys.exit(1)
    return options, rpms


def branding():
    root = os.environ.get("XSDDKVM_SIM_ROOT", "")
    with open(root + "/etc/xsddkvm-sim/ddk.json") as f:
        ddk = json.load(f)
    return ddk["product_brand"], ddk["product_version"]


def rpm_info(path):
    out = subprocess.run(
        ["rpm", "-qp", "--qf", "%{NAME}\n%{GROUP}\n", path],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    return out[0], out[1]


def md5_of(path):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def repository_xml(options, brand, version):
    doc = xml.dom.minidom.Document()
    repo = doc.createElement("repository")
    repo.setAttribute("originator", options.vendor_code)
    repo.setAttribute("name", options.label)
    repo.setAttribute("product", brand)
    repo.setAttribute("version", options.version)
    if options.build:
        repo.setAttribute("build", options.build)
    if options.mem:
        repo.setAttribute("memory-requirement-mb", str(options.mem))
    if options.homogeneous:
        repo.setAttribute("enforce-homogeneity", "true")
    description = doc.createElement("description")
    description.appendChild(doc.createTextNode(options.text))
    repo.appendChild(description)
    requires = doc.createElement("requires")
    for key, value in (
        ("originator", "xcp" if options.xcp else "xs"),
        ("name", "main"),
        ("test", "eq"),
        ("product", brand),
        ("version", version),
    ):
        requires.setAttribute(key, value)
    repo.appendChild(requires)
    doc.appendChild(repo)
    return doc.toprettyxml()


def packages_xml(rpms):
    doc = xml.dom.minidom.Document()
    packages = doc.createElement("packages")
    for path in rpms:
        name, group = rpm_info(path)
        package = doc.createElement("package")
        package.setAttribute("label", name)
        driver = group.endswith("/Kernel")
        package.setAttribute("type", "driver-rpm" if driver else "rpm")
        package.setAttribute("size", str(os.path.getsize(path)))
        package.setAttribute("md5", md5_of(path))
        found = re.match(r"^.+?-(\d.*)-modules$", name) if driver else None
        if found:
            package.setAttribute("kernel", found.group(1))
        package.appendChild(doc.createTextNode(os.path.basename(path)))
        packages.appendChild(package)
    doc.appendChild(packages)
    return doc.toprettyxml()


def write_iso(iso_path, options, members):
    iso = pycdlib.PyCdlib()
    # Joliet volume IDs hold 16 UCS-2 characters; the primary one is --text cut to 32
    iso.new(
        interchange_level=4,
        joliet=3,
        rock_ridge="1.09",
        vol_ident=options.text[:16],
        app_ident_str=options.vendor_name[:128],
    )
    iso.pvd.volume_identifier = options.text[:32].encode().ljust(32)
    handles = []
    try:
        for name, source in members:
            fp = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")
            handles.append(fp)
            size = len(source) if isinstance(source, bytes) else os.path.getsize(source)
            iso.add_fp(fp, size, iso_path="/" + name, rr_name=name, joliet_path="/" + name)
        iso.write(iso_path)
    finally:
        iso.close()
        for fp in handles:
            fp.close()


def main(argv):
    options, rpms = parse(argv)
    brand, version = branding()
    repository = repository_xml(options, brand, version)
    packages = packages_xml(rpms)
    os.makedirs(options.output, exist_ok=True)
    members = [("XS-REPOSITORY", repository.encode()), ("XS-PACKAGES", packages.encode())]
    members += [(os.path.basename(path), path) for path in rpms]
    base = os.path.join(options.output, options.label)
    if options.iso:
        write_iso(base + ".iso", options, members)
        with open(base + ".iso.md5", "w") as f:
            f.write(f"{md5_of(base + '.iso')}  {os.path.basename(base)}.iso\n")
    if options.tarball:
        with tarfile.open(base + ".tar.gz", "w:gz") as tar:
            for name, source in members:
                if isinstance(source, bytes):
                    info = tarfile.TarInfo(name)
                    info.size = len(source)
                    tar.addfile(info, io.BytesIO(source))
                else:
                    tar.add(source, arcname=name)
    if options.iso or options.tarball:
        with open(base + ".metadata.md5", "w") as f:
            f.write(hashlib.md5((repository + packages).encode()).hexdigest() + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
