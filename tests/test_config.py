"""The config file: every mistake is refused at start with the file, the key and what would be right."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import get_args

import pytest
from pydantic import BaseModel

from bot.config_check import effective_config_text
from bot.words.config import BOUNDS, EXPECTED, config_error_text
from runner.config import Bound, Config, ConfigError, ValueType, load_config
from runner.config_schema import BackendTable
from tests.conftest import VENV_BIN

# (the file, where the message must point, what it must say would be right)
BROKEN: list[tuple[str, str, str]] = [
    # the issue's own
    ('[gpus]\ninventory = "0,3"\n', '[gpus] inventory = "0,3"', '["0", "3"]'),
    ('[backend]\nkind = "slrum"\n', '[backend] kind = "slrum"', 'must be one of "local", "slurm"'),
    ('[backend]\nknd = "slurm"\n', '[backend] knd = "slurm"', 'did you mean "kind"'),
    ('[access]\nusers = "U1"\n', '[access] users = "U1"', "must be a list"),
    ('[access]\nuser = ["U1"]\n', '[access] user = ["U1"]', 'did you mean "users"? [access] takes: admins, channels'),
    # unknown tables and keys
    ("[backnd]\nkind = 'local'\n", "[backnd]", "did you mean [backend]?"),
    ("[gpu]\ninventory = 2\n", "[gpu]", "did you mean [gpus]?"),
    ("[paths]\noutput_dir = 'out'\n", '[paths] output_dir = "out"', 'did you mean "output_root"'),
    ("[swift]\nbinary = 'swift'\n", '[swift] binary = "swift"', 'did you mean "bin"'),
    ("[runner]\nstop_grace_s = 5\n", "[runner] stop_grace_s = 5", 'did you mean "stop_grace_seconds"'),
    ("[slurm]\npartitions = 'gpu'\n", '[slurm] partitions = "gpu"', 'did you mean "partition"'),
    ("[slack]\ncard_interval = 2\n", "[slack] card_interval = 2", 'did you mean "card_interval_s"'),
    ("[http]\nprot = 8000\n", "[http] prot = 8000", 'did you mean "port"'),
    ("[access]\nadmin = ['U1']\n", '[access] admin = ["U1"]', 'did you mean "admins"'),
    ("[gpus]\npoll = 5\n", "[gpus] poll = 5", "[gpus] takes: inventory, poll_seconds"),
    # wrong types
    ("backend = 'slurm'\n", 'backend = "slurm"', "must be a table"),
    ("[gpus]\ninventory = true\n", "[gpus] inventory = true", "GPU count (e.g. 2)"),
    ("[gpus]\ninventory = -1\n", "[gpus] inventory = -1", "GPU count (e.g. 2)"),
    ("[gpus]\ninventory = [0.5]\n", "[gpus] inventory = [0.5]", "list of GPU ids"),
    ('[gpus]\npoll_seconds = "5"\n', '[gpus] poll_seconds = "5"', "must be a number, e.g. 2.5"),
    ('[swift]\noffline = "yes"\n', '[swift] offline = "yes"', "must be true or false"),
    ("[swift]\nbin = 3\n", "[swift] bin = 3", 'must be a string, e.g. "text"'),
    ("[swift.env]\nHF_TOKEN = 123456\n", "[swift] env.HF_TOKEN", "must be a string"),  # the value not echoed
    ("[access]\nusers = [1]\n", "[access] users[0] = 1", "must be a string"),
    ("[access]\nadmins = 'U1'\n", '[access] admins = "U1"', "must be a list"),
    ("[slurm]\nnodes = '2'\n", '[slurm] nodes = "2"', "must be a whole number, e.g. 2"),
    ("[slurm]\nextra_args = '--mem=1G'\n", '[slurm] extra_args = "--mem=1G"', "must be a list"),
    ("[http]\nallow_anonymous_loopback = 1\n", "[http] allow_anonymous_loopback = 1", "must be true or false"),
    ("[http]\ntokens_file = 5\n", "[http] tokens_file = 5", "must be a path"),
    (
        '[http]\nanonymous_loopback_with_tokens = "yes"\n',
        '[http] anonymous_loopback_with_tokens = "yes"',
        "must be true or false",
    ),
    (
        "[http]\nanonymous_loopback_with_token = true\n",
        "[http] anonymous_loopback_with_token = true",
        'did you mean "anonymous_loopback_with_tokens"',
    ),
    ('[http]\ntrusted_proxies = "127.0.0.1"\n', '[http] trusted_proxies = "127.0.0.1"', "must be a list of IP"),
    (
        '[http]\ntrusted_proxies = ["proxy.local"]\n',
        '[http] trusted_proxies = ["proxy.local"]',
        '"proxy.local" is not an IP address or network',
    ),
    ('[http]\ntrusted_proxies = ["10.0.0.1/8"]\n', '[http] trusted_proxies = ["10.0.0.1/8"]', "host bits set"),
    ('[http]\ntrusted_proxy = ["10.0.0.1"]\n', '[http] trusted_proxy = ["10.0.0.1"]', 'did you mean "trusted_proxies"'),
    ("[paths]\nmodel_roots = '/models'\n", '[paths] model_roots = "/models"', "must be a list"),
    ("[runner]\nscrub_env = 'HF_TOKEN'\n", '[runner] scrub_env = "HF_TOKEN"', "must be a list"),
    ("[runner]\nwarm_start = 'yes'\n", '[runner] warm_start = "yes"', "must be true or false"),
    # numbers out of range
    ("[slack]\nhttp_port = 70000\n", "[slack] http_port = 70000", "less than or equal to 65535"),
    ("[slack]\ncommands_at_once = 0\n", "[slack] commands_at_once = 0", "greater than or equal to 1"),
    ("[http]\nport = 0\n", "[http] port = 0", "greater than or equal to 1"),
    ("[runner]\nprogress_poll_seconds = 0\n", "[runner] progress_poll_seconds = 0", "greater than 0"),
    ("[runner]\nstop_grace_seconds = -1\n", "[runner] stop_grace_seconds = -1", "greater than 0"),
    ("[slurm]\npoll_seconds = 0\n", "[slurm] poll_seconds = 0", "greater than 0"),
    ("[slurm]\nnodes = 0\n", "[slurm] nodes = 0", "greater than or equal to 1"),
    ("[slack]\nupdate_per_min = 0\n", "[slack] update_per_min = 0", "greater than 0"),
    ("[http]\nmax_body_bytes = 0\n", "[http] max_body_bytes = 0", "greater than or equal to 1"),
    ("[runner]\ntry_idle_minutes = 0\n", "[runner] try_idle_minutes = 0", "greater than 0"),
    ('[runner]\ntry_idle_minutes = "5"\n', '[runner] try_idle_minutes = "5"', "must be a number, e.g. 2.5"),
    ("[access]\ntry_users = 'U1'\n", '[access] try_users = "U1"', "must be a list"),
    # recipe tables: free-form swift flags, but only values a command line can take
    ("[llm]\nlora_rank = {a = 1}\n", "[llm] lora_rank", "must be a string, a number, true/false or a list of strings"),
    ("[vlm.args]\ndataset = [1, 2]\n", "[vlm] args.dataset = [1, 2]", "list of strings"),
    ("[llm]\ndrop = 'dataloader_num_workers'\n", '[llm] drop = "dataloader_num_workers"', "must be a list"),
    ("[llm.env]\nOMP_NUM_THREADS = 1\n", "[llm] env.OMP_NUM_THREADS", "must be a string"),
    ("llm = 5\n", "llm = 5", "must be a table"),
]


@pytest.mark.parametrize(("text", "where", "right"), BROKEN, ids=[w for _, w, _ in BROKEN])
def test_a_broken_config_is_refused_naming_the_key(tmp_path: Path, text: str, where: str, right: str) -> None:
    path = tmp_path / "trainbot.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as refused:
        load_config(path, base_dir=tmp_path)
    message = config_error_text(refused.value)
    assert message.startswith(f"{path}: {where}: ") and "\n" not in message
    assert right in message


def refusal_of(tmp_path: Path, text: str) -> ConfigError:
    path = tmp_path / "trainbot.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as refusal:
        load_config(path, base_dir=tmp_path)
    return refusal.value


def test_a_mistake_is_a_fact_with_the_file_the_key_and_what_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "trainbot.toml"
    [key] = refusal_of(tmp_path, '[backend]\nknd = "slurm"\n').mistakes
    assert (key.file, key.code, key.tables, key.key, key.value) == (path, "unknown_key", ("backend",), "knd", "slurm")
    assert key.close == "kind" and key.known == tuple(sorted(BackendTable.model_fields))
    [table] = refusal_of(tmp_path, "[backnd]\nkind = 'local'\n").mistakes
    assert (table.code, table.tables, table.key, table.value) == ("unknown_table", (), "backnd", None)
    assert table.close == "backend" and table.known == tuple(sorted(Config.model_fields))
    [kind, users] = refusal_of(tmp_path, '[backend]\nkind = "slrum"\n[access]\nusers = ["U1", 2]\n').mistakes
    assert (kind.code, kind.choices) == ("not_one_of", ("local", "slurm"))
    assert (users.code, users.key, users.value, users.expected) == ("wrong_type", "users[1]", 2, "string")
    [port] = refusal_of(tmp_path, "[slack]\nhttp_port = 70000\n").mistakes
    assert (port.code, port.value, port.bound) == ("out_of_range", 70000, ("le", 65535))
    [inventory] = refusal_of(tmp_path, "[gpus]\ninventory = -1\n").mistakes
    assert inventory.code == "invalid" and "GPU count" in inventory.detail
    [unreadable] = refusal_of(tmp_path, "[gpus\n").mistakes
    assert (unreadable.file, unreadable.code, unreadable.key) == (path, "unreadable", "") and unreadable.detail


def test_an_env_value_is_never_kept_nor_said(tmp_path: Path) -> None:
    secret = refusal_of(tmp_path, '[swift.env]\nHF_TOKEN = 123456\n[llm.env]\nTOKEN = ["hf_x"]\n')
    assert [(m.tables, m.key, m.value) for m in secret.mistakes] == [
        (("swift",), "env.HF_TOKEN", None),
        (("llm",), "env.TOKEN", None),
    ]
    assert "123456" not in config_error_text(secret) + str(secret) and "hf_x" not in config_error_text(secret)


def test_every_type_and_bound_a_mistake_names_has_words() -> None:
    assert set(EXPECTED) == set(get_args(ValueType)) and set(BOUNDS) == set(get_args(Bound))
    assert config_error_text(ConfigError(text="TRAINBOT_API_TOKENS: entry 2 is wrong")) == (
        "TRAINBOT_API_TOKENS: entry 2 is wrong"
    )


def trainbot(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "trainbot"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize("text", [t for t, _, _ in BROKEN[:5]], ids=[w for _, w, _ in BROKEN[:5]])
def test_the_cli_refuses_a_broken_config_in_one_line_without_a_traceback(tmp_path: Path, text: str) -> None:
    (tmp_path / "trainbot.toml").write_text(text)
    for args in (["--config", "trainbot.toml", "console"], ["config", "check", "trainbot.toml"]):
        done = trainbot(tmp_path, *args)
        assert done.returncode == 2, done.stderr
        [line] = done.stderr.splitlines()
        [(_, where, right)] = [case for case in BROKEN if case[0] == text]
        assert line.startswith(f"trainbot: trainbot.toml: {where}: ") and right in line
        assert done.stdout == ""


def test_every_mistake_in_a_file_is_listed(tmp_path: Path) -> None:
    (tmp_path / "trainbot.toml").write_text('[backend]\nkind = "slrum"\n[access]\nusers = "U1"\n')
    done = trainbot(tmp_path, "config", "check", "trainbot.toml")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        'trainbot: trainbot.toml: [backend] kind = "slrum": must be one of "local", "slurm"',
        'trainbot.toml: [access] users = "U1": must be a list, e.g. ["a", "b"]',
    ]


def test_a_config_that_cannot_be_parsed_is_refused_with_the_file(tmp_path: Path) -> None:
    (tmp_path / "trainbot.toml").write_text("[gpus\ninventory = 2\n")
    done = trainbot(tmp_path, "config", "check", "trainbot.toml")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("trainbot: trainbot.toml: cannot read the config file:")


def test_a_good_config_reads_as_written(tmp_path: Path) -> None:
    path = tmp_path / "trainbot.toml"
    path.write_text("""
[paths]
output_root = "out"
log_dir = "/var/tmp/trainbot-logs"
model_roots = ["models", "/shared/models"]
[gpus]
inventory = ["0", 3]
[backend]
kind = "slurm"
[access]
users = ["U1"]
[runner]
scrub_env = ["HF_TOKEN"]
try_idle_minutes = 2
[http]
tokens_file = "api-tokens"
port = 8080
[llm]
learning_rate = 5e-5
gradient_checkpointing = false
dataset = ["a.jsonl#5", "b.jsonl#5"]
drop = ["dataloader_num_workers"]
""")
    config = load_config(path, base_dir=tmp_path)
    assert config.gpu_inventory == ("0", "3")
    assert config.backend.kind == "slurm" and config.access.users == ("U1",) and config.scrub_env == ("HF_TOKEN",)
    assert config.try_idle_s == 120
    assert config.output_root == tmp_path / "out" and config.log_dir == Path("/var/tmp/trainbot-logs")
    assert config.model_roots == (tmp_path / "models", Path("/shared/models")) and config.data_roots == ()
    assert config.http.tokens_file == tmp_path / "api-tokens" and config.http.port == 8080
    assert config.http.host == "127.0.0.1" and config.slack.update_per_min == 50.0
    assert config.llm.changes == {
        "learning_rate": "5e-05",
        "gradient_checkpointing": "false",
        "dataset": ("a.jsonl#5", "b.jsonl#5"),
        "dataloader_num_workers": None,
    }


def test_every_path_is_taken_from_base_dir_defaults_included(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A table the file leaves out is read like an empty one: its default paths resolve against base_dir too,
    never against the directory the bot happens to start in."""
    base, elsewhere = tmp_path / "base", tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    path = tmp_path / "trainbot.toml"
    path.write_text('[paths]\nmodel_roots = ["m"]\ndata_roots = ["d"]\n[http]\ntokens_file = "t"\n')

    def paths(value: object) -> list[Path]:
        if isinstance(value, Path):
            return [value]
        items = value.values() if isinstance(value, dict) else value if isinstance(value, tuple | list) else ()
        return [p for item in items for p in paths(item)]

    for config, count in ((load_config(base_dir=base), 3), (load_config(path, base_dir=base), 6)):
        found = paths(config.model_dump())
        assert len(found) == count and all(p.is_absolute() and p.is_relative_to(base) for p in found), found
        assert config.base_dir == base and config.db_path == base / ".trainbot" / "trainbot.db"
        assert config.changed(runner={"warm_start": False}).base_dir == base


def test_config_check_states_every_key_of_every_table(tmp_path: Path) -> None:
    stated: dict[str, set[str]] = {}
    table = ""
    for line in effective_config_text(None).splitlines():
        if line.startswith("[") and "." not in line:
            table = line.strip("[]")
            stated[table] = set()
        elif line.startswith("["):  # [swift.env]
            stated[table].add(line.strip("[]").split(".", 1)[1])
        elif key := re.match(r"(\w+) = |# (\w+) = \(not set\)$", line):
            stated[table].add(key[1] or key[2])
    schema = {}
    for name, field in Config.model_fields.items():
        assert isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
        schema[name] = set(field.annotation.model_fields) - {"flags"}  # a recipe's plain keys print under args
    assert stated == schema


def test_config_check_prints_every_effective_key_with_secrets_masked(tmp_path: Path) -> None:
    (tmp_path / "trainbot.toml").write_text("""
[swift.env]
HF_TOKEN = "hf_supersecret"
OMP_NUM_THREADS = "1"
MY_MIRROR = "also-secret"
[runner]
scrub_env = ["MY_MIRROR"]
[gpus]
inventory = 2
""")
    done = trainbot(tmp_path, "config", "check", env={"TRAINBOT_CONFIG": str(tmp_path / "trainbot.toml")})
    assert done.returncode == 0, done.stderr
    assert "hf_supersecret" not in done.stdout and "also-secret" not in done.stdout
    lines = done.stdout.splitlines()
    assert 'HF_TOKEN = "********"' in lines and 'OMP_NUM_THREADS = "1"' in lines
    assert 'inventory = ["0", "1"]' in lines and 'kind = "local"' in lines  # a default, stated
    assert f'output_root = "{tmp_path / "output"}"' in lines and "port = 8000" in lines
    assert "# partition = (not set)" in lines


def test_http_access_keys_are_refused_at_start_when_mistyped_and_config_check_says_what_they_mean(
    tmp_path: Path,
) -> None:
    path = tmp_path / "trainbot.toml"
    path.write_text("[http]\nanonymous_loopback_with_token = true\n")
    refused = trainbot(tmp_path, "--config", "trainbot.toml", "serve", "--port", "0")
    assert refused.returncode == 2 and "[http] anonymous_loopback_with_token = true" in refused.stderr
    assert 'did you mean "anonymous_loopback_with_tokens"' in refused.stderr

    def meaning(text: str) -> str:
        path.write_text(text)
        done = trainbot(tmp_path, "config", "check", "trainbot.toml")
        assert done.returncode == 0, done.stderr
        return " ".join(line.lstrip("# ") for line in done.stdout.split("# what this means:")[1].splitlines())

    default = meaning("")
    assert "`http:anonymous` only while no API tokens are configured" in default and "they get 401" in default
    assert "no proxy is trusted: X-Forwarded-For and X-Forwarded-Proto are ignored" in default
    opened = meaning('[http]\nanonymous_loopback_with_tokens = true\ntrusted_proxies = ["10.0.0.5", "fd00::/8"]\n')
    assert "even with API tokens configured" in opened and "reverse proxy" in opened
    assert "believed from 10.0.0.5, fd00::/8 only" in opened and "Secure" in opened
    assert "get 401, from loopback too" in meaning("[http]\nallow_anonymous_loopback = false\n")
