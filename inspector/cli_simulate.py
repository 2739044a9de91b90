"""`inspector simulate`: play a production line against a running service, drawing parts
with defects and uploading them like a camera (inspector.camera), with a progress line."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from inspector.cli_client import DEFAULT_URL, TokenOpt, UrlOpt
from inspector.cli_client import fail as _fail
from inspector.cli_client import require_api as _require_api
from inspector.cli_client import token_for as _token

if TYPE_CHECKING:
    from inspector.camera import SimulationReport
    from inspector.simulate import Size


def simulate(
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    rate: Annotated[float, typer.Option(help="uploads per second; 0 = as fast as possible")] = 20.0,
    count: Annotated[int, typer.Option(min=1, help="parts to send")] = 500,
    labels: Annotated[bool, typer.Option(help="send each part's ground-truth label")] = True,
    mix: Annotated[
        str | None,
        typer.Option(help="class mix, e.g. ok=0.8,scratch=0.05,pit=0.05,crack=0.05,stain=0.05"),
    ] = None,
    size: Annotated[
        str, typer.Option(help="image side in pixels, or WIDTHxHEIGHT for non-square parts")
    ] = "256",
    defect_size: Annotated[
        str,
        typer.Option(help="normal (a share of the part) or small (a few pixels, any image size)"),
    ] = "normal",
    image_format: Annotated[str, typer.Option("--format", help="jpeg, png, bmp or tiff")] = "jpeg",
    concurrency: Annotated[int, typer.Option(min=1, help="parallel uploads")] = 8,
    line: Annotated[str, typer.Option(help="line id sent with each part")] = "line-1",
    station: Annotated[str, typer.Option(help="station id")] = "station-1",
    camera: Annotated[str, typer.Option(help="camera id")] = "cam-1",
    seed: Annotated[int, typer.Option(help="random seed (same seed, same parts)")] = 0,
) -> None:
    """Play a production line: draw parts with defects and upload them like a camera."""
    from inspector import camera as cam

    parsed_mix, dims = _simulation_options(mix, size, defect_size, image_format)
    secret = _token(token, "camera")
    _require_api(url)
    report = cam.run_simulation(
        url,
        secret,
        count=count,
        rate=rate or None,
        concurrency=concurrency,
        labels=labels,
        mix=parsed_mix,
        size=dims,
        defect_size=defect_size,
        fmt=image_format,
        line=line,
        station=station,
        camera_id=camera,
        seed=seed,
        progress=_simulation_progress(count),
    )
    typer.echo("", err=True)
    typer.echo(report.summary())
    if report.failed or report.rejected:
        raise typer.Exit(1)


def _simulation_options(
    mix: str | None, size: str, defect_size: str, image_format: str
) -> tuple[dict[str, float] | None, Size]:
    """The parsed ``--mix`` and ``--size``, once every option is known good (else exit 1)."""
    from inspector import simulate as sim

    try:
        parsed_mix = sim.parse_mix(mix) if mix else None
        dims = sim.parse_size(size)
    except ValueError as exc:
        _fail(str(exc))
    if defect_size not in sim.DEFECT_SIZES:
        _fail(f"unknown defect size {defect_size!r}; use {' or '.join(sim.DEFECT_SIZES)}")
    if image_format not in ("jpeg", "png", "bmp", "tiff"):
        _fail(f"unknown format {image_format!r}; use jpeg, png, bmp or tiff")
    return parsed_mix, dims


def _simulation_progress(count: int) -> Callable[[SimulationReport], None]:
    """A progress line on stderr, rewritten at most every half second and at the end."""
    last = [0.0]

    def progress(report: SimulationReport) -> None:
        done = report.accepted + report.duplicates + sum(report.rejected.values()) + report.failed
        if done == count or report.elapsed - last[0] >= 0.5:
            last[0] = report.elapsed
            eta = (count - done) / report.rate if report.rate > 0 else 0.0
            typer.echo(
                f"\r{done}/{count} sent  {report.rate:5.1f}/s  accepted {report.accepted}  "
                f"rejected {sum(report.rejected.values())}  failed {report.failed}  "
                f"ETA {eta:4.0f}s",
                nl=False,
                err=True,
            )

    return progress
