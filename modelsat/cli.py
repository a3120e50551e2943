"""The `modelsat` command line (Typer). Every command turns a `ModelSATError` into one line and exit code 2.

This is the only module that may reach up into `training/` and `services/` (lazily, inside a command).
"""

from __future__ import annotations

import json
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer

from modelsat.console import RichProgress, fail, quiet_libraries, split_names
from modelsat.errors import ConfigError, ModelSATError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Model-SAT: capability instruction tuning for LLM routing (train, evaluate, route).",
)


def bundled_config(name: str) -> Path:
    """Path of a config shipped in `modelsat/configs/`."""
    return Path(str(resources.files("modelsat") / "configs" / name))


def _run_config(config: Path | None, data: str | None, unseen: str | None, max_steps: int | None = None):
    from modelsat.runconfig import RunConfig

    cfg = RunConfig.from_yaml(config) if config else RunConfig()
    raw = cfg.model_dump(mode="json")
    if data is not None:
        raw["data"]["zoo"] = data
    names = split_names(unseen)
    if names is not None:
        raw["data"]["unseen_models"] = names
    if max_steps is not None:
        raw["train"]["max_steps"] = max_steps
    return RunConfig.from_dict(raw, source=str(config or "defaults"))


@app.command()
def train(
    out: Annotated[Path, typer.Option("--out", help="Checkpoint directory to write")],
    data: Annotated[
        str | None, typer.Option("--data", help="Zoo directory or name under $MODELSAT_DATA")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Run config YAML (default: built-in defaults)")
    ] = None,
    unseen_models: Annotated[
        str | None, typer.Option("--unseen-models", help="Comma-separated models kept out of training")
    ] = None,
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", min=1, help="Override train.max_steps")
    ] = None,
    workers: Annotated[
        int,
        typer.Option("--workers", min=0, help="Ray Train + DeepSpeed workers; 0 = single process (no Ray)"),
    ] = 0,
    use_gpu: Annotated[bool, typer.Option("--use-gpu", help="One GPU per worker (NCCL, bf16)")] = False,
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="Ray cluster (auto, HOST:PORT, ray://HOST:10001); default RAY_ADDRESS or embedded",
        ),
    ] = None,
    storage_path: Annotated[
        str | None,
        typer.Option(
            "--storage-path", help="Ray Train checkpoints: local path or URI (default: <out>.ray-train)"
        ),
    ] = None,
    checkpoint_every: Annotated[
        int, typer.Option("--checkpoint-every", min=1, help="Steps between distributed checkpoints")
    ] = 100,
    max_failures: Annotated[
        int, typer.Option("--max-failures", min=0, help="Worker-group restarts from the latest checkpoint")
    ] = 2,
    deepspeed_config: Annotated[
        Path | None, typer.Option("--deepspeed-config", help="DeepSpeed JSON (default: ZeRO-2)")
    ] = None,
    run_name: Annotated[
        str | None, typer.Option("--run-name", help="Ray Train run name; the same name resumes")
    ] = None,
) -> None:
    """Train a router on a zoo and save a self-contained checkpoint (distributed with --workers N)."""
    quiet_libraries()
    try:
        cfg = _run_config(config, data, unseen_models, max_steps)
        if workers == 0:
            if use_gpu or address or storage_path or deepspeed_config or run_name:
                raise ConfigError(
                    "--use-gpu, --address, --storage-path, --deepspeed-config and --run-name need --workers N (N >= 1)"
                )
            from modelsat.pipeline import train_pipeline

            train_pipeline(cfg, out, RichProgress())
            return
        from training.launcher import DEFAULT_DEEPSPEED_CONFIG, DistributedOptions, train_distributed

        options = DistributedOptions(
            workers=workers,
            use_gpu=use_gpu,
            address=address,
            storage_path=storage_path,
            run_name=run_name,
            deepspeed_config=deepspeed_config or DEFAULT_DEEPSPEED_CONFIG,
            checkpoint_every=checkpoint_every,
            max_failures=max_failures,
        )
        _, summary = train_distributed(cfg, out, options, RichProgress())
        typer.echo(
            f"trained {summary['steps_done']} steps on {workers} worker(s) in {summary['train_seconds']:.0f}s; "
            f"checkpoint: {out}"
        )
    except ModelSATError as e:
        fail(e)


@app.command("eval")
def eval_(
    router: Annotated[Path, typer.Option("--router", help="Router checkpoint directory")],
    data: Annotated[str, typer.Option("--data", help="Zoo directory or name under $MODELSAT_DATA")],
    out: Annotated[Path, typer.Option("--out", help="Report directory to write")],
    split: Annotated[str, typer.Option("--split", help="test (never-used questions) or validation")] = "test",
    config: Annotated[
        Path | None, typer.Option("--config", help="Run config YAML; its eval section is used")
    ] = None,
    registry: Annotated[
        str | None,
        typer.Option(
            "--registry", help="Route over the registry's models (profiles from it); default: the zoo's"
        ),
    ] = None,
) -> None:
    """Evaluate a checkpoint and the baselines on a zoo; write report.json, report.md and plots."""
    quiet_libraries()
    try:
        from modelsat.evaluate import evaluate_pipeline
        from modelsat.report import comparison_table, write_report
        from modelsat.runconfig import RunConfig

        ev = (RunConfig.from_yaml(config) if config else RunConfig()).eval
        profiles = None
        if registry is not None:
            from modelsat.router import RouterCheckpoint

            ckpt = RouterCheckpoint.load(router)
            profiles = _registry(registry).profiles_for(ckpt.aptitude)
            router = ckpt
        report = evaluate_pipeline(router, data, split, ev, RichProgress(), profiles)
        write_report(report, out)
        typer.echo(comparison_table(report))
        typer.echo(f"\nreport: {out / 'report.md'}")
    except ModelSATError as e:
        fail(e)


@app.command()
def route(
    router: Annotated[Path, typer.Option("--router", help="Router checkpoint directory")],
    instruction: Annotated[list[str], typer.Argument(help="Instruction(s) to route")],
    candidates: Annotated[
        str | None, typer.Option("--candidates", help="Comma-separated subset of models")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    registry: Annotated[
        str | None,
        typer.Option(
            "--registry", help="Route over the registry's models (default: the checkpoint's profiles)"
        ),
    ] = None,
) -> None:
    """Print the chosen model and every candidate's router score for each instruction."""
    quiet_libraries()
    try:
        from modelsat.router import Router, RouterCheckpoint

        ckpt = RouterCheckpoint.load(router)
        r = Router(ckpt, _registry(registry).profiles_for(ckpt.aptitude) if registry else None)
        t0 = time.perf_counter()
        decisions = r.route(instruction, split_names(candidates))
        ms = 1000 * (time.perf_counter() - t0)
        if as_json:
            typer.echo(
                json.dumps(
                    [
                        {"model_id": d.model_id, "scores": d.scores, "p_correct": d.p_correct}
                        for d in decisions
                    ],
                    indent=1,
                )
            )
            return
        for text, d in zip(instruction, decisions, strict=True):
            typer.echo(f"instruction: {text[:100]}{'…' if len(text) > 100 else ''}")
            typer.echo(f"chosen model: {d.model_id}")
            typer.echo("| rank | candidate model | router score (logit) | p(correct) |")
            typer.echo("|---|---|---|---|")
            for i, m in enumerate(d.ranked(), 1):
                typer.echo(f"| {i} | {m} | {d.scores[m]:+.3f} | {d.p_correct[m]:.3f} |")
        typer.echo(
            f"({len(r.candidates)} candidates, {ms:.0f} ms for {len(instruction)} instruction(s))", err=True
        )
    except ModelSATError as e:
        fail(e)


@app.command()
def aptitude(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the aptitude test and profiles to")],
    data: Annotated[
        str | None, typer.Option("--data", help="Zoo directory or name under $MODELSAT_DATA")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Run config YAML (split and aptitude sections)")
    ] = None,
    unseen_models: Annotated[
        str | None, typer.Option("--unseen-models", help="Models that must not choose the items")
    ] = None,
) -> None:
    """Select the aptitude test from a zoo's training pool and write it with every model's capability profile."""
    quiet_libraries()
    try:
        from modelsat.aptitude import measure_profiles, select_aptitude_test
        from modelsat.data import load_zoo
        from modelsat.paths import atomic_output_dir
        from modelsat.pipeline import check_unseen
        from modelsat.split import split_zoo

        cfg = _run_config(config, data, unseen_models)
        if cfg.data.zoo is None:
            raise ModelSATError("no zoo given: pass --data ZOO_DIR")
        zoo = load_zoo(cfg.data.zoo)
        seen = check_unseen(zoo, cfg.data.unseen_models)
        split = split_zoo(zoo, cfg.split.seed, cfg.split.test_fraction)
        test = select_aptitude_test(zoo, split.pool, seen, cfg.aptitude)
        profiles = measure_profiles(test, zoo)
        with atomic_output_dir(out) as tmp:
            (tmp / "aptitude_test.json").write_text(json.dumps(test.to_dict(), indent=1))
            (tmp / "profiles.json").write_text(
                json.dumps({m: p.to_dict() for m, p in profiles.items()}, indent=1)
            )
            (tmp / "profiles.txt").write_text(
                "\n\n".join(f"{m}:\n{p.text(test)}" for m, p in profiles.items()) + "\n"
            )
        typer.echo(test.notes)
        typer.echo(f"wrote {out}/aptitude_test.json, profiles.json, profiles.txt ({len(profiles)} models)")
    except ModelSATError as e:
        fail(e)


@app.command()
def run(
    config: Annotated[
        Path | None, typer.Option("--config", help="Run config (default: bundled mmlu_pro.yaml)")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output directory (default: runs/<zoo>)")] = None,
    data: Annotated[str | None, typer.Option("--data", help="Override data.zoo")] = None,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve",
            help="Serving stage: deploy the zoo's recorded models behind the router on Ray Serve and answer the "
            "held-out instructions through the OpenAI-compatible API",
        ),
    ] = False,
) -> None:
    """The main job: train on a zoo with some models held out as unseen, evaluate, print and write the report."""
    quiet_libraries()
    try:
        from modelsat.evaluate import evaluate_pipeline
        from modelsat.pipeline import train_pipeline
        from modelsat.report import comparison_table, write_report

        if serve:
            import importlib.util

            if importlib.util.find_spec("ray") is None or importlib.util.find_spec("openai") is None:
                raise ConfigError(
                    "--serve needs Ray Serve and the openai client: bash scripts/setup.sh serve "
                    "(or pip install -e '.[serving]')"
                )
        cfg_path = config or bundled_config("mmlu_pro.yaml")
        cfg = _run_config(cfg_path, data, None)
        out_dir = out or Path("runs") / Path(cfg.data.zoo or "zoo").name
        progress = RichProgress()
        progress.log(f"config {cfg_path}; output {out_dir}")
        t0 = time.monotonic()
        ckpt, summary = train_pipeline(cfg, out_dir / "checkpoint", progress)
        report = evaluate_pipeline(ckpt, cfg.data.zoo, "test", cfg.eval, progress)
        report["training_summary"] = summary
        if serve:
            from services.stage import serve_held_out

            report["serving"] = serve_held_out(
                out_dir / "checkpoint",
                cfg.data.zoo,
                out_dir / "registry",
                progress,
                expected_accuracy=report["methods"]["model_sat"]["accuracy"],
            )
        write_report(report, out_dir / "report")
        typer.echo("")
        typer.echo(
            f"## {report['zoo']}: {report['n_questions']} held-out questions, {len(report['models'])} models "
            f"({len(report['unseen_models'])} unseen in training: {', '.join(report['unseen_models'])})"
        )
        typer.echo("")
        typer.echo(comparison_table(report))
        if serve:
            s = report["serving"]
            typer.echo(
                f"\nserving stage: {s['n_questions']} held-out instructions through the HTTP API (model auto, "
                f"{s['concurrency']} clients): accuracy {100 * s['accuracy']:.1f}% by recorded outcomes "
                f"({'equal to' if s['matches_eval'] else 'DIFFERENT FROM'} modelsat eval's "
                f"{100 * report['methods']['model_sat']['accuracy']:.1f}%), "
                f"{100 * (s['accuracy_regraded'] or 0):.1f}% re-grading the answer text of the {s['n_regraded']} "
                "gradable ones against the reference; "
                f"{s['requests_per_s']:.0f} requests/s, p50 {s['latency_ms_p50']:.0f} ms"
            )
        typer.echo(
            f"\nreport: {out_dir / 'report' / 'report.md'} (plots beside it); checkpoint: {out_dir / 'checkpoint'}"
        )
        typer.echo(f"total {time.monotonic() - t0:.0f}s", err=True)
    except ModelSATError as e:
        fail(e)


zoo_app = typer.Typer(
    no_args_is_help=True,
    help="The model registry: add candidate models through their aptitude test (no retraining), list, show, remove.",
)
app.add_typer(zoo_app, name="zoo")

RegistryOption = Annotated[
    str | None,
    typer.Option("--registry", help="Registry directory or URI (default: $MODELSAT_REGISTRY or ./registry)"),
]


def _registry(uri: str | None):
    from modelsat.registry import ModelRegistry, default_registry_uri

    return ModelRegistry(uri or default_registry_uri())


def _engine_args(pairs: list[str] | None) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--engine-arg {pair!r}: expected KEY=VALUE (e.g. max_model_len=2048)")
        out[key.strip()] = yaml.safe_load(value)
    return out


@zoo_app.command("add")
def zoo_add(
    names: Annotated[list[str], typer.Argument(help="Candidate model name(s) to add")],
    router: Annotated[Path, typer.Option("--router", help="Router checkpoint whose aptitude test is taken")],
    engine: Annotated[str, typer.Option("--engine", help="vllm, openai or recorded")],
    registry: RegistryOption = None,
    replace: Annotated[bool, typer.Option("--replace", help="Replace a registered model")] = False,
    model_path: Annotated[
        str | None, typer.Option("--model-path", help="vllm: local model directory or hub id")
    ] = None,
    engine_arg: Annotated[
        list[str] | None, typer.Option("--engine-arg", help="vllm: KEY=VALUE for vllm.LLM (repeatable)")
    ] = None,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="openai: endpoint, e.g. http://127.0.0.1:8000/v1")
    ] = None,
    served_model_name: Annotated[
        str | None, typer.Option("--served-model-name", help="openai: model name at the endpoint")
    ] = None,
    api_key_env: Annotated[
        str, typer.Option("--api-key-env", help="openai: environment variable holding the API key")
    ] = "OPENAI_API_KEY",
    max_concurrency: Annotated[
        int, typer.Option("--max-concurrency", min=1, help="openai: requests in flight per worker")
    ] = 8,
    timeout_s: Annotated[
        float, typer.Option("--timeout-s", min=0.001, help="openai: request timeout (s)")
    ] = 120.0,
    max_retries: Annotated[int, typer.Option("--max-retries", min=0, help="openai: retries per request")] = 3,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", min=1, help="vllm/openai: generated tokens per item at most")
    ] = 512,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="recorded: zoo with the outcomes; any engine: zoo with the items if the router lacks them",
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Ray Data workers (engines) for the job")
    ] = 1,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Items per engine batch")] = 32,
    num_gpus: Annotated[float, typer.Option("--num-gpus", min=0.0, help="vllm: GPUs per worker")] = 0.0,
    address: Annotated[
        str | None, typer.Option("--address", help="Ray cluster (default RAY_ADDRESS or embedded)")
    ] = None,
    serve_app: Annotated[
        str | None, typer.Option("--serve-app", help="Card: Ray Serve application serving the model")
    ] = None,
    usd_per_mtok: Annotated[
        float | None, typer.Option("--usd-per-mtok", min=0.0, help="Card: price in USD per 1M tokens")
    ] = None,
    context_length: Annotated[
        int | None, typer.Option("--context-length", min=1, help="Card: context length in tokens")
    ] = None,
) -> None:
    """Run a router's aptitude test on candidate model(s) and register their capability profiles."""
    quiet_libraries()
    try:
        from modelsat.registry import ModelCard
        from training.aptitude import AptitudeJobConfig, add_models
        from training.engines import ENGINES, engine_config

        if engine not in ENGINES:
            raise ConfigError(f"unknown engine {engine!r}; allowed: {', '.join(ENGINES)}")
        given = {
            "--model-path": model_path,
            "--engine-arg": engine_arg or None,
            "--num-gpus": num_gpus or None,
            "--base-url": base_url,
            "--served-model-name": served_model_name,
        }
        allowed = {
            "vllm": {"--model-path", "--engine-arg", "--num-gpus"},
            "openai": {"--base-url", "--served-model-name"},
        }
        stray = [k for k, v in given.items() if v is not None and k not in allowed.get(engine, set())]
        if stray:
            raise ConfigError(f"{', '.join(stray)} do not apply to --engine {engine}")
        if engine == "vllm":
            if model_path is None:
                raise ConfigError("--engine vllm needs --model-path (a local model directory or hub id)")
            if len(names) != 1:
                raise ConfigError(f"--engine vllm adds one model per --model-path; got {len(names)} names")
            options: dict[str, Any] = {
                "model_path": model_path,
                "max_tokens": max_tokens,
                "engine_args": _engine_args(engine_arg),
                "num_gpus": num_gpus,
            }
        elif engine == "openai":
            if base_url is None:
                raise ConfigError("--engine openai needs --base-url (e.g. http://127.0.0.1:8000/v1)")
            if served_model_name and len(names) != 1:
                raise ConfigError("--served-model-name applies to one model; give one name")
            options = {
                "base_url": base_url,
                "model": served_model_name,
                "api_key_env": api_key_env,
                "max_concurrency": max_concurrency,
                "timeout_s": timeout_s,
                "max_retries": max_retries,
                "max_tokens": max_tokens,
            }
        else:
            if data is None:
                raise ConfigError("--engine recorded needs --data ZOO_DIR (the zoo holding the outcomes)")
            options = {"zoo": data}
        job = AptitudeJobConfig(engine=engine_config(engine, options), workers=workers, batch_size=batch_size)
        reg = _registry(registry)
        price = _recorded_prices(data, names) if engine == "recorded" and usd_per_mtok is None else {}
        cards = [
            ModelCard.from_dict(
                {
                    "name": n,
                    "serve_application": serve_app,
                    "base_url": base_url,
                    "served_model_name": served_model_name,
                    "usd_per_mtok": usd_per_mtok if usd_per_mtok is not None else price.get(n),
                    "context_length_tokens": context_length,
                },
                source=f"model card of {n!r}",
            )
            for n in names
        ]
        entries = add_models(router, cards, job, reg, replace, data, RichProgress(), address)
        for e in entries:
            typer.echo(
                f"added {e.name} (version {e.version}) to {reg.uri}: {e.aptitude['n_items']} items, "
                f"{e.aptitude['n_unparsed']} unparsed, mean accuracy {100 * float(e.profile.accuracies.mean()):.1f}%"
            )
    except ModelSATError as e:
        fail(e)


def _recorded_prices(data: str | None, names: list[str]) -> dict[str, float]:
    """Prices the zoo's models.parquet states (`price_per_mtok`), for cards of recorded models."""
    from modelsat.data import load_zoo

    if data is None:
        return {}
    info = load_zoo(data).model_info
    return {n: float(p) for n in names if (p := info.get(n, {}).get("price_per_mtok")) is not None}


@zoo_app.command("list")
def zoo_list(
    registry: RegistryOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """List the registered candidate models."""
    try:
        from modelsat.registry import registry_table

        reg = _registry(registry)
        entries = reg.entries()
        if as_json:
            typer.echo(
                json.dumps([e.to_dict() | {"aptitude": _summary(e.aptitude)} for e in entries], indent=1)
            )
            return
        typer.echo(registry_table(entries) if entries else f"registry {reg.uri} has no models")
    except ModelSATError as e:
        fail(e)


def _summary(aptitude: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in aptitude.items() if k != "items"}


@zoo_app.command("show")
def zoo_show(
    name: Annotated[str, typer.Argument(help="Candidate model name")],
    registry: RegistryOption = None,
    version: Annotated[int | None, typer.Option("--version", min=1, help="A past version")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (with per-item results)")] = False,
) -> None:
    """Show a registered model: card, capability profile, aptitude results and version history."""
    try:
        from modelsat.registry import entry_report

        reg = _registry(registry)
        entry = reg.get(name, version)
        if as_json:
            typer.echo(json.dumps(entry.to_dict() | {"history": reg.history(name)}, indent=1))
            return
        typer.echo(entry_report(entry, reg.history(name)))
    except ModelSATError as e:
        fail(e)


@zoo_app.command("remove")
def zoo_remove(
    name: Annotated[str, typer.Argument(help="Candidate model name")],
    registry: RegistryOption = None,
) -> None:
    """Unregister a model (a tombstone version; its history stays readable)."""
    try:
        reg = _registry(registry)
        version = reg.remove(name)
        typer.echo(f"removed {name} from {reg.uri} (tombstone version {version})")
    except ModelSATError as e:
        fail(e)


serve_app = typer.Typer(
    invoke_without_command=True,
    help="Routed serving on Ray Serve: OpenAI-compatible ingress -> router -> one application per zoo model.",
)
app.add_typer(serve_app, name="serve")

AddressOption = Annotated[
    str | None,
    typer.Option("--address", help="Ray cluster (default RAY_ADDRESS or the embedded local cluster)"),
]


def _absolute(zoo: Any) -> Any:
    """Paths in a zoo config resolved against the current directory (replicas run elsewhere)."""
    from modelsat.zoo import ZooConfig

    raw = zoo.model_dump(mode="json")
    for key in ("checkpoint", "registry"):
        v = raw["router"].get(key)
        if v and "://" not in v:
            raw["router"][key] = str(Path(v).expanduser().resolve())
    for m in raw["models"]:
        _absolute_engine(m)
    return ZooConfig.from_dict(raw, source="zoo config")


def _absolute_engine(model: dict[str, Any]) -> None:
    eng = model["engine"]
    key = {"recorded": "zoo", "vllm": "model_path"}.get(eng["kind"])
    if key and Path(eng[key]).expanduser().exists():
        eng[key] = str(Path(eng[key]).expanduser().resolve())


@serve_app.callback()
def serve_main(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option("--config", help="Zoo config YAML (modelsat.zoo.ZooConfig)")
    ] = None,
    router: Annotated[Path | None, typer.Option("--router", help="Override router.checkpoint")] = None,
    registry: Annotated[str | None, typer.Option("--registry", help="Override router.registry")] = None,
    address: AddressOption = None,
    detach: Annotated[bool, typer.Option("--detach", help="Deploy and return (remote clusters)")] = False,
) -> None:
    """Deploy the zoo and serve until interrupted (Ctrl-C), or `add-model` / `remove-model` on a running one."""
    if ctx.invoked_subcommand is not None:
        return
    quiet_libraries()
    try:
        if config is None:
            raise ConfigError("modelsat serve needs --config ZOO.yaml (see modelsat/configs/zoo_*.yaml)")
        from modelsat.zoo import ZooConfig
        from services.deploy import deploy_zoo

        zoo = ZooConfig.from_yaml(config)
        raw = zoo.model_dump(mode="json")
        if router is not None:
            raw["router"]["checkpoint"] = str(router)
        if registry is not None:
            raw["router"]["registry"] = registry
        zoo = _absolute(ZooConfig.from_dict(raw, source=str(config)))
        from modelsat.router import RouterCheckpoint

        RouterCheckpoint.load(zoo.router.checkpoint)  # fail fast, before any replica starts
        t0 = time.monotonic()
        deploy_zoo(zoo, address)
        url = f"http://{zoo.http_host}:{zoo.http_port}{zoo.ingress.route_prefix.rstrip('/')}/v1"
        typer.echo(
            f"serving {len(zoo.models)} models + auto at {url} (ready in {time.monotonic() - t0:.0f}s); "
            f"OpenAI clients: base_url={url!r}, model='auto'"
        )
        if detach:
            return
        typer.echo("Ctrl-C stops serving", err=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            from services.deploy import stop_serving

            stop_serving()
    except ModelSATError as e:
        fail(e)


@serve_app.command("add-model")
def serve_add_model(
    config: Annotated[
        Path | None, typer.Option("--config", help="Model YAML (one zoo model: name, engine, resources)")
    ] = None,
    from_registry: Annotated[
        str | None,
        typer.Option(
            "--from-registry", help="Add a registered model served at its card's OpenAI-compatible URL"
        ),
    ] = None,
    registry: RegistryOption = None,
    address: AddressOption = None,
    replace: Annotated[bool, typer.Option("--replace", help="Update a served model")] = False,
) -> None:
    """Hot-add a model to a running zoo: deploy its application and reconfigure the router (no restarts)."""
    quiet_libraries()
    try:
        from modelsat.zoo import ZooModel
        from services.deploy import add_model

        if (config is None) == (from_registry is None):
            raise ConfigError("give exactly one of --config MODEL.yaml and --from-registry NAME")
        if config is not None:
            raw = ZooModel.from_yaml(config).model_dump(mode="json")
        else:
            card = _registry(registry).get(from_registry).card
            if not card.base_url:
                raise ConfigError(
                    f"the registry card of {from_registry!r} has no base_url (Serve application "
                    f"{card.serve_application!r}); add a model served by this cluster with --config MODEL.yaml"
                )
            raw = {
                "name": card.name,
                "engine": {"kind": "openai", "base_url": card.base_url, "model": card.served_model_name},
                "resources": {"num_cpus": 0.1},
            }
        _absolute_engine(raw)
        zoo = add_model(
            ZooModel.from_dict(raw, source=str(config or "registry card")), address or "auto", replace
        )
        typer.echo(f"serving {raw['name']}; models: {', '.join(m.name for m in zoo.models)}")
    except ModelSATError as e:
        fail(e)


@serve_app.command("remove-model")
def serve_remove_model(
    name: Annotated[str, typer.Argument(help="Model to remove")],
    address: AddressOption = None,
) -> None:
    """Remove a model from a running zoo: the router stops choosing it, then its application stops."""
    quiet_libraries()
    try:
        from services.deploy import remove_model

        zoo = remove_model(name, address or "auto")
        typer.echo(f"removed {name}; models: {', '.join(m.name for m in zoo.models)}")
    except ModelSATError as e:
        fail(e)


def main() -> None:
    """Console entry point (`modelsat`)."""
    app(prog_name="modelsat")


if __name__ == "__main__":
    sys.exit(main())
