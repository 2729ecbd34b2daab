"""Install with `pip install -e .` (library), `pip install -e .[test]` (plus the test tools);
`.[labelstudio]` adds Label Studio beside it (see the note on the extra)."""
import pathlib

from setuptools import find_packages, setup

here = pathlib.Path(__file__).parent
requirements = [
    line.strip()
    for line in (here / "requirements.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]

setup(
    name="vl4pose_jax",
    version="0.1.0",
    description="Active learning for pose estimation in JAX/Flax: VL4Pose, Bayesian DeepPrior + CKE and their baselines.",
    long_description=(here / "README.md").read_text() if (here / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["vl4pose_jax", "vl4pose_jax.*", "experiments", "experiments.*"]),
    install_requires=requirements,
    extras_require={
        "test": ["pytest>=9.2.0", "pytest-xdist>=3.8.0", "scikit-image>=0.26.0", "pycocotools>=2.0.11"],
        # Label Studio beside this project (tests/test_labelstudio.py finds it). 1.22.0 is the
        # newest that co-installs: 1.23.x needs label-studio-sdk 2.1 -> opencv-python-headless
        # < 4.13 -> numpy < 2.3, against our numpy >= 2.4.6. Its google-cloud-logging makes
        # every command print a FutureWarning (Python 3.11) on stderr, so .ci/run and the
        # README put Label Studio (1.23.2) in its own environment instead.
        "labelstudio": ["label-studio==1.22.0"],
    },
)
