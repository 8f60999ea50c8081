"""The README's command blocks run top to bottom as written (#20): its "Running" block's local commands,
then its evaluation block's evaluate, predict and one-image commands, in one working directory, in order.
Only the training size is made small (options appended: the last of an option wins), so the blocks
keep what could break them when run in turn: the dirs they share, the settings each run keeps."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, SAMPLE, spark_env, spark_submit

pytestmark = pytest.mark.spark
FAST = ["--epochs", "1", "--image-size", "48", "--batch-size", "8", "--no-report"]
LOCAL_MASTER = re.compile(r"--master '?(local\[\*\]|local-cluster\[[\d,]+\])'?")


def commands_of(section: str) -> list[str]:
    """The shell commands of the first bash block under a README heading, continuation lines joined."""
    text = (REPO / "README.md").read_text()
    body = text[text.index(f"\n## {section}\n"):]
    block = re.search(r"```bash\n(.*?)```", body, re.S).group(1)
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def run(command: str, cwd: Path) -> subprocess.CompletedProcess:
    argv = shlex.split(command.split(" #")[0])  # a trailing comment is not part of the command
    if argv[0] == "spark-submit":
        argv[0] = spark_submit()
        if argv[-1] != "--help" and any(a.endswith("jobs/train.py") for a in argv):
            argv += FAST
    elif argv[:3] == ["python", "-m", "tfos_facecnn"]:
        argv[0] = str(Path(spark_submit()).parent / "python")
    argv = [str(REPO / a) if a.startswith("jobs/") else a for a in argv]
    return subprocess.run(argv, cwd=cwd, env=spark_env(), capture_output=True, text=True, timeout=420)


@pytest.mark.timeout(1500)
def test_the_readmes_running_and_evaluation_blocks_run_top_to_bottom(tmp_path: Path):
    (tmp_path / "conf").symlink_to(REPO / "conf")  # as in the checkout: the commands name conf/ relatively
    (tmp_path / "new_images").mkdir()
    (tmp_path / "more").mkdir()
    shutil.copy(SAMPLE / "faces" / "3.jpg", tmp_path / "new_images" / "face.jpg")
    shutil.copy(SAMPLE / "comics" / "3.jpg", tmp_path / "more" / "comic.png")  # a JPEG named .png decodes too
    shutil.copy(SAMPLE / "faces" / "4.jpg", tmp_path / "photo.jpg")
    shutil.copy(SAMPLE / "comics" / "4.jpg", tmp_path / "drawing.png")

    running = [c for c in commands_of("Running") if LOCAL_MASTER.search(c)]
    assert len(running) == 2, running  # local[*], then local-cluster: a second run beside the first
    evaluation = [c for c in commands_of("Evaluation, inference and reports")
                  if "jobs/evaluate.py" in c or "jobs/predict.py" in c or c.startswith("python -m tfos_facecnn")]
    assert len(evaluation) == 3, evaluation
    for command in [*running, *evaluation]:
        result = run(command, tmp_path)
        assert result.returncode == 0, (command, result.stdout[-2000:] + result.stderr[-2000:])
    assert (tmp_path / "output" / "export" / "evaluation-test" / "report.md").exists()
    assert (tmp_path / "predictions" / "_SUCCESS").exists()
    assert (tmp_path / "output" / "two-nodes" / "export" / "model.keras").exists()
