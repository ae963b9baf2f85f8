"""The example notebook, run top to bottom by a real Jupyter kernel (nbclient and ipykernel, which
the test install brings), so that it cannot rot. Slow (a minute of training): CI runs it with the
other slow tests."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


def outputs(cell) -> str:
    texts = []
    for output in cell.get("outputs", []):
        texts.append(output.get("text", ""))
        texts.extend(str(value) for value in output.get("data", {}).values())
    return "\n".join(texts)


@pytest.mark.slow
def test_the_quickstart_notebook_runs_in_a_jupyter_kernel(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # a cell that raises fails here, naming the cell
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    shown = {cell.source.splitlines()[-1]: outputs(cell) for cell in code}
    assert "Run saved to runs/" in outputs(code[1])
    assert "<iframe srcdoc=" in shown["run.report()"]  # the page, inline
    assert "image/png" in str(code[6].get("outputs"))  # the prediction figure
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "eval-valid" / "summary.json").is_file()
    assert (tmp_path / "unet.pt").is_file() and (runs[0] / "report.html").is_file()
