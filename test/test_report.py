"""Every results folder records the command that wrote it and the code's commit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from reloc_ros.eval.report import emit, record_command, write_summary

ROOT = Path(__file__).resolve().parents[1]


def test_a_summary_records_its_command_and_commit(tmp_path):
    write_summary(tmp_path / "run", "# table\n", {"x": float("nan")})
    rec = json.loads((tmp_path / "run" / "command.json").read_text())
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert rec["commit"] == (head.stdout.strip() if head.returncode == 0 else None)
    assert "pytest" in rec["command"] and rec["date"].startswith("20")
    assert json.loads((tmp_path / "run" / "summary.json").read_text()) == {"x": None}


def test_a_report_file_gets_its_command_beside_it(tmp_path, capsys):
    emit("| a |\n", tmp_path / "bench.md")
    assert capsys.readouterr().out.startswith("| a |")
    assert (tmp_path / "bench.md").read_text() == "| a |\n"
    assert json.loads((tmp_path / "bench.command.json").read_text())["command"]
    assert record_command(tmp_path / "x.json") == tmp_path / "x.command.json"


def test_the_command_line_is_the_process_own(tmp_path):
    code = "import sys; from reloc_ros.eval.report import record_command; record_command(sys.argv[1])"
    subprocess.run([sys.executable, "-c", code, str(tmp_path), "--flag", "a b"], check=True, timeout=60)
    rec = json.loads((tmp_path / "command.json").read_text())
    assert rec["command"].endswith(f"{tmp_path} --flag 'a b'")
