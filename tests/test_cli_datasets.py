"""`bench` as users run it: real subprocesses of the installed console script.

Checks the contract of DESIGN.md sections 7-8: exit code 2 and one stderr line naming the bad
value for usage errors, no tracebacks, summaries with every field, and jaxmarl's import-time
prints kept out of stdout.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from o2omarl.datasets import store

# What `import jaxmarl` prints to stdout (checked below to still be what it prints).
JAXMARL_NOISE = ("Importing submoduled environments", "Submoduled environments not found")


def bench_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "bench"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "o2omarl.cli"]


def bench(*args, root: Path | None = None, timeout=180) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if root is not None:
        env["MINARI_DATASETS_PATH"] = str(root)
    return subprocess.run(bench_cmd() + list(args), capture_output=True, text=True, env=env,
                          timeout=timeout)


def assert_clean(res: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout, res.stderr
    for noise in JAXMARL_NOISE:
        assert noise not in res.stdout


def one_error_line(res: subprocess.CompletedProcess) -> str:
    assert_clean(res)
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, res.stderr
    assert res.stdout == ""
    return lines[0]


@pytest.mark.slow
def test_jaxmarl_really_prints_on_import():
    """Guards the noise checks: they mean something only while jaxmarl prints these lines."""
    out = subprocess.run([sys.executable, "-c", "import jaxmarl"], capture_output=True,
                         text=True, timeout=120).stdout
    assert JAXMARL_NOISE[0] in out


def test_maps_table():
    res = bench("maps")
    assert res.returncode == 0, res.stderr
    assert_clean(res)
    lines = res.stdout.splitlines()
    header = lines[0].split()
    assert header[0] == "map", lines[0]  # the table is the first thing on stdout
    assert set(lines[1]) <= {"-", " "}
    rows = {}
    for line in lines[2:]:
        cells = re.split(r"\s{2,}", line.strip())
        rows[cells[0]] = cells
    assert {"3m", "2s3z", "8m"} <= set(rows)
    cols = re.split(r"\s{2,}", lines[0].strip())
    row = dict(zip(cols, rows["3m"]))
    assert (row["agents"], row["enemies"], row["actions"]) == ("3", "3", "8")
    assert row["episode limit"] == "100"
    two = dict(zip(cols, rows["2s3z"]))
    assert (two["agents"], two["enemies"], two["actions"]) == ("5", "5", "10")


@pytest.mark.parametrize("args, named, accepted", [
    (["--map", "4m"], "'4m'", ["3m", "2s3z"]),
    (["--map", "3m", "--behaviour", "random", "--episodes", "0"], "0", []),
    (["--map", "3m", "--behaviour", "random", "--episodes", "-5"], "-5", []),
    (["--map", "3m", "--behaviour", "foo"], "'foo'", ["random", "heuristic"]),
    (["--map", "3m", "--behaviour", "random", "--epsilon", "1.5"], "1.5", []),
], ids=["map-4m", "episodes-0", "episodes-negative", "behaviour-foo", "epsilon-1.5"])
@pytest.mark.slow
def test_collect_usage_errors(args, named, accepted, fresh_root):
    res = bench("collect", *args, root=fresh_root)
    assert res.returncode == 2, (res.returncode, res.stderr)
    line = one_error_line(res)
    assert named in line
    if named.strip("'-").isdigit():
        assert "--episodes" in line
    for a in accepted:
        assert a in line
    assert store.list_ids() == []  # nothing written


def test_show_unknown_dataset(fresh_root):
    res = bench("datasets", "show", "smax/3m/nope-v0", root=fresh_root)
    assert res.returncode != 0
    line = one_error_line(res)
    assert "smax/3m/nope-v0" in line
    bad = bench("datasets", "show", "not-an-id", root=fresh_root)
    assert bad.returncode == 2 and "'not-an-id'" in one_error_line(bad)


def parse_summary(stdout: str) -> dict:
    out = {}
    for line in stdout.splitlines():
        m = re.match(r"^([a-z][a-z -/]*?):\s+(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


@pytest.mark.slow
def test_collect_summary_list_reuse_delete(fresh_root):
    args = ["collect", "--map", "3m", "--behaviour", "random", "--episodes", "20",
            "--num-envs", "16", "--seed", "3"]
    res = bench(*args, root=fresh_root)
    assert res.returncode == 0, res.stderr
    assert_clean(res)
    s = parse_summary(res.stdout)
    for field in ("id", "episodes", "steps", "return", "win rate", "size", "path", "elapsed",
                  "env-steps/s"):
        assert field in s, (field, res.stdout)
    rec = store.get(s["id"])
    assert s["id"] == "smax/3m/random-v0"
    assert int(s["episodes"]) == rec.stats["episodes"] == 20
    assert int(s["steps"]) == rec.stats["steps"]
    mean, std = re.match(r"(-?[\d.]+) \+- ([\d.]+)", s["return"]).groups()
    assert float(mean) == pytest.approx(rec.stats["return_mean"], abs=0.005)
    assert float(std) == pytest.approx(rec.stats["return_std"], abs=0.005)
    assert float(s["win rate"]) == pytest.approx(rec.stats["win_rate"], abs=0.0005)
    assert float(s["size"].split()[0]) == pytest.approx(rec.size_bytes() / 1e6, abs=0.05)
    assert Path(s["path"]) == fresh_root / "smax" / "3m" / "random-v0" == rec.path
    assert float(s["elapsed"].split()[0]) > 0
    assert float(s["env-steps/s"].split()[0].replace(",", "")) > 0

    listing = bench("datasets", "list", root=fresh_root)
    assert listing.returncode == 0
    row = next(x for x in listing.stdout.splitlines() if x.startswith("smax/3m/random-v0"))
    assert row.split()[1:4] == ["random", "20", s["steps"]]

    again = bench(*args, root=fresh_root)
    assert again.returncode == 0
    assert "smax/3m/random-v0 already holds these settings" in again.stdout
    assert parse_summary(again.stdout)["id"] == "smax/3m/random-v0"
    assert store.list_ids() == ["smax/3m/random-v0"]

    shown = bench("datasets", "show", "smax/3m/random-v0", root=fresh_root)
    assert shown.returncode == 0 and '"seed": 3' in shown.stdout

    gone = bench("datasets", "delete", "smax/3m/random-v0", root=fresh_root)
    assert gone.returncode == 0 and "deleted smax/3m/random-v0" in gone.stdout
    assert store.list_ids() == []
    empty = bench("datasets", "list", root=fresh_root)
    assert empty.returncode == 0 and "smax/3m/random-v0" not in empty.stdout
    missing = bench("datasets", "delete", "smax/3m/random-v0", root=fresh_root)
    assert missing.returncode == 2 and "smax/3m/random-v0" in one_error_line(missing)


def test_verify_needs_an_id_or_all(fresh_root):
    res = bench("datasets", "verify", root=fresh_root)
    assert res.returncode == 2
    assert_clean(res)
    assert "--all" in res.stderr


def _on_a_terminal(args: list[str], answer: bytes, root: Path) -> tuple[int, str]:
    """Run `bench ARGS` with a pseudo-terminal as stdin/stdout, typing `answer` when asked."""
    import pty
    import select

    env = dict(os.environ, MINARI_DATASETS_PATH=str(root))
    main_fd, term = pty.openpty()
    proc = subprocess.Popen(bench_cmd() + args, stdin=term, stdout=term, stderr=term, env=env,
                            close_fds=True)
    os.close(term)
    out, answered = b"", False
    while True:
        ready, _, _ = select.select([main_fd], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(main_fd, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
        if not answered and b"[y/N]" in out:
            os.write(main_fd, answer)
            answered = True
    os.close(main_fd)
    return proc.wait(timeout=60), out.decode(errors="replace")


def test_delete_asks_on_a_terminal_and_yes_skips_the_question(fresh_root):
    from o2omarl import datasets

    datasets.collect("3m", "random", episodes=4, seed=0, num_envs=4, show_progress=False)
    code, out = _on_a_terminal(["datasets", "delete", "smax/3m/random-v0"], b"n\n", fresh_root)
    assert "delete smax/3m/random-v0 (4 episodes" in out and code != 0
    assert store.list_ids() == ["smax/3m/random-v0"]  # declined: nothing deleted
    code, out = _on_a_terminal(["datasets", "delete", "smax/3m/random-v0"], b"y\n", fresh_root)
    assert code == 0 and "deleted smax/3m/random-v0" in out and store.list_ids() == []
    datasets.collect("3m", "random", episodes=4, seed=0, num_envs=4, show_progress=False)
    code, out = _on_a_terminal(["datasets", "delete", "smax/3m/random-v0", "--yes"], b"n\n",
                               fresh_root)
    assert code == 0 and "[y/N]" not in out and store.list_ids() == []


@pytest.mark.parametrize("args", [
    ["datasets", "list"],
    ["collect", "--map", "3m", "--behaviour", "random", "--episodes", "4"],
    ["run", "ft-qmix", "--map", "3m", "--dataset", "heuristic", "--steps", "100"],
])
@pytest.mark.slow
def test_an_unusable_dataset_root_is_one_line_naming_it(tmp_path, args):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    env_root = blocker / "datasets"  # a path under a regular file: never a folder
    res = bench(*(args + (["--runs-dir", str(tmp_path / "runs")] if args[0] == "run" else [])),
                root=env_root)
    assert res.returncode == 2, res.stderr
    assert_clean(res)
    line = one_error_line(res)
    assert f"MINARI_DATASETS_PATH '{env_root}' is not a usable folder" in line
    assert not (tmp_path / "runs").exists()


@pytest.fixture
def read_only_root(tmp_path):
    """A dataset root nobody can write, root included (the immutable flag; a chmod does not
    stop root): a shared read-only mount as clusters serve datasets."""
    import shutil

    if shutil.which("chattr") is None:
        pytest.skip("no chattr on this machine")
    root = tmp_path / "shared"
    res = bench("collect", "--map", "3m", "--behaviour", "random", "--episodes", "4",
                "--num-envs", "4", root=root)
    assert res.returncode == 0, res.stderr
    if subprocess.run(["chattr", "-R", "+i", str(root)], capture_output=True).returncode:
        pytest.skip("chattr +i is not permitted here")
    try:
        yield root
    finally:
        subprocess.run(["chattr", "-R", "-i", str(root)], capture_output=True)


@pytest.mark.slow
def test_a_read_only_dataset_root_serves_every_reading_command(read_only_root, tmp_path):
    dataset = "smax/3m/random-v0"
    for args in (["datasets", "list"], ["datasets", "show", dataset],
                 ["datasets", "verify", dataset]):
        res = bench(*args, root=read_only_root)
        assert res.returncode == 0 and dataset in res.stdout, (args, res.stderr)
    res = bench("run", "ft-qmix", "--map", "3m", "--dataset", "random", "--steps", "100",
                "--pretrain-steps", "5", "--set", "num_envs=4", "--set", "eval_episodes=4",
                "--set", "hidden=8", "--set", "batch_size=2", "--runs-dir", str(tmp_path / "runs"),
                root=read_only_root)
    assert res.returncode == 0, res.stderr
    # writing is refused in one line that says reading works
    res = bench("collect", "--map", "3m", "--behaviour", "heuristic", "--episodes", "4",
                root=read_only_root)
    assert res.returncode == 2
    assert "is not a usable folder (not writable); set MINARI_DATASETS_PATH to a writable " \
           "folder to write datasets (reading works from a read-only one)" in one_error_line(res)
