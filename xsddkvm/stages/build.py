"""Stage: run each make target in order, streaming the log live and into ``DIR/build.log``."""

from __future__ import annotations

import os
import re
import shlex

from ..errors import BuildError, ConfigError
from ..events import LogLine
from ..guest.ssh import Responder
from ..secrets import Secret, redact
from .context import BuildContext


def responders(ctx: BuildContext) -> list[Responder]:
    found = []
    for i, item in enumerate(ctx.playbook.build.responders):
        answer = os.environ.get(item.answer_env)
        if answer is None:
            raise ConfigError(
                f"{ctx.playbook.path}: build.responders[{i}]: ${item.answer_env} is not set.",
                f"Export {item.answer_env} with the answer to {item.prompt!r}.",
            )
        found.append(Responder(re.compile(item.prompt), Secret(answer)))
    return found


class RunBuild:
    name = "build"
    description = "run the make targets"
    keepable = False

    def run(self, ctx: BuildContext) -> None:
        pb = ctx.playbook
        answers = responders(ctx)
        log_path = ctx.output_dir / "build.log"
        with open(log_path, "w", encoding="utf-8") as log:

            def on_line(stream: str, line: str) -> None:
                log.write(redact(line) + "\n")
                log.flush()
                ctx.emit(LogLine(stream, line))

            for target in pb.build.targets:
                command = f"cd {shlex.quote(pb.source.remote_dir)} && {pb.build.make} {shlex.quote(target)}"
                log.write(f"$ {command}\n")
                try:
                    ctx.ssh.run(
                        command,
                        on_line=on_line,
                        timeout=pb.timeouts.build,
                        responders=answers,
                    )
                except BuildError as exc:
                    raise BuildError(
                        f"make {target} failed in the DDK on {ctx.xs.host_label}"
                        + (
                            f" with exit status {exc.exit_status}"
                            if exc.exit_status is not None
                            else ""
                        )
                        + f": {exc.message}",
                        f"Read the full log in {log_path}; fix the source and run the build again "
                        "(add --keep-vm on-failure to inspect the DDK).",
                        command=command,
                        exit_status=exc.exit_status,
                        last_lines=exc.last_lines[-20:],
                    ) from None

    def undo(self, ctx: BuildContext) -> None:
        """Nothing to undo: build outputs live in the throwaway VM; build.log is kept."""
