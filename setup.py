"""Builds the longhaul Python module with the project's CMake and packages it.

The C++ extension (target longhaul_python) and the longhaul libraries it links are installed into
the package directory by CMake's `python` install component; they find each other through RPATH
$ORIGIN. Environment: LONGHAUL_BUILD_DIR (default build-pip/, kept between installs so a rebuild
is incremental), CMAKE_ARGS (extra configure arguments, e.g. -DLONGHAUL_WITH_CUDA=OFF), JOBS.
LONGHAUL_CMAKE_BUILD: an existing, configured build tree of the same project version (e.g. the
README's build/, configured with LONGHAUL_WITH_PYTHON for this Python) to build the extension in
instead of configuring one: no second compile of the libraries. The package's Python files always
come from these sources.
"""
import os
import re
import shlex
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))


def project_version():
    with open(os.path.join(ROOT, "CMakeLists.txt")) as f:
        return re.search(r"project\(longhaul VERSION ([0-9.]+)", f.read()).group(1)


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        # The package directory of the extension; the install component's destination is "longhaul".
        prefix = os.path.dirname(os.path.dirname(os.path.abspath(self.get_ext_fullpath(ext.name))))
        jobs = os.environ.get("JOBS", str(os.cpu_count() or 1))
        existing = os.environ.get("LONGHAUL_CMAKE_BUILD")
        build = existing or os.environ.get("LONGHAUL_BUILD_DIR", os.path.join(ROOT, "build-pip"))
        if existing:
            check_existing_build(existing)
        else:
            self.configure(build)
        subprocess.run(["cmake", "--build", build, "--target", "longhaul_python", "-j", jobs], check=True)
        subprocess.run(["cmake", "--install", build, "--component", "python", "--prefix", prefix], check=True)

    @staticmethod
    def configure(build):
        configure = ["cmake", "-S", ROOT, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DLONGHAUL_WITH_PYTHON=ON",
                     f"-DPython3_EXECUTABLE={sys.executable}", "-DCMAKE_INSTALL_RPATH=$ORIGIN"]
        if not os.path.exists(os.path.join(build, "CMakeCache.txt")):
            if shutil.which("ninja"):
                configure += ["-G", "Ninja"]
            if shutil.which("ccache"):
                configure += ["-DCMAKE_CXX_COMPILER_LAUNCHER=ccache", "-DCMAKE_CUDA_COMPILER_LAUNCHER=ccache"]
        configure += shlex.split(os.environ.get("CMAKE_ARGS", ""))
        subprocess.run(configure, check=True)


def check_existing_build(build):
    """LONGHAUL_CMAKE_BUILD must be a configured longhaul tree of this version with the Python module."""
    cache = os.path.join(build, "CMakeCache.txt")
    if not os.path.exists(cache):
        sys.exit(f"LONGHAUL_CMAKE_BUILD={build}: no CMakeCache.txt there (configure it first, or unset the variable)")
    with open(cache) as f:
        text = f.read()

    def value(key):
        m = re.search(rf"^{key}:[A-Z]+=(.*)$", text, re.M)
        return m.group(1) if m else None

    if value("CMAKE_PROJECT_VERSION") not in (None, project_version()):
        sys.exit(f"LONGHAUL_CMAKE_BUILD={build} is longhaul {value('CMAKE_PROJECT_VERSION')}, "
                 f"these sources are {project_version()}")
    if value("LONGHAUL_WITH_PYTHON") not in ("ON", "TRUE", "1"):
        sys.exit(f"LONGHAUL_CMAKE_BUILD={build} was configured without LONGHAUL_WITH_PYTHON=ON")


# setuptools checks that egg_base exists before anything builds: a fresh clone has no build-pip/.
os.makedirs(os.path.join(ROOT, "build-pip"), exist_ok=True)

setup(
    version=project_version(),
    packages=["longhaul", "longhaul.integrations"],
    package_dir={"": "python"},
    ext_modules=[Extension("longhaul._C", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
    zip_safe=False,
    # setuptools' own staging next to the CMake build, not in build/ (the README's CMake build).
    options={"build": {"build_base": os.path.join(ROOT, "build-pip", "setuptools")},
             "egg_info": {"egg_base": os.path.join(ROOT, "build-pip")}},
)
