"""``indox-jupyter demo``: run the quickstart notebook offline and write it as HTML.

The kernel gets ``INDOX_ROUTER_BASE_URL=local`` and no API key, so every image comes from the
built-in local server: one command from a fresh clone shows what the magics look like.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

NOTEBOOK = "quickstart.ipynb"
KERNEL_TIMEOUT = 120  # seconds per cell; the local server answers in well under one


def find_notebook() -> Path:
    """The quickstart from the repository checkout, else the copy installed with the package."""
    checkout = Path(__file__).resolve().parent.parent / "notebooks" / NOTEBOOK
    if checkout.is_file():
        return checkout
    from importlib import resources

    installed = resources.files("indox_jupyter") / "notebooks" / NOTEBOOK
    if installed.is_file():
        return Path(str(installed))
    raise FileNotFoundError(f"{NOTEBOOK} is neither in the checkout ({checkout}) nor installed with the package")


def kernel_env(base_url: str = "local") -> dict[str, str]:
    """The environment for the demo kernel: offline, keyless, and able to import this package."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INDOX_ROUTER_")}
    env["INDOX_ROUTER_BASE_URL"] = base_url
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    return env


def execute_notebook(path: Path, env: dict[str, str], workdir: Path | None = None) -> object:
    """Run every cell of ``path`` in a fresh kernel with ``env``; returns the executed notebook."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=KERNEL_TIMEOUT, kernel_name="python3",
        resources={"metadata": {"path": str(workdir or path.parent)}},
    )
    client.execute(env=env)
    return nb


def run_demo(out: str | os.PathLike[str] = "indox-demo.html") -> Path:
    """Execute the quickstart against the local server and write it as standalone HTML."""
    try:
        from nbconvert import HTMLExporter
    except ImportError:
        raise SystemExit("indox-jupyter demo needs the demo extras: pip install 'indox-jupyter[demo]'") from None
    import tempfile

    with tempfile.TemporaryDirectory(prefix="indox-demo-") as tmp:
        env = kernel_env()
        # Sample images from the local server do not belong in the user's real gallery.
        env["INDOX_JUPYTER_HOME"] = str(Path(tmp) / "gallery")
        nb = execute_notebook(find_notebook(), env, Path(tmp))
    body, _ = HTMLExporter().from_notebook_node(nb)
    target = Path(out).expanduser().resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(body, encoding="utf-8")
    return target


if __name__ == "__main__":
    print(run_demo(*sys.argv[1:2]))
