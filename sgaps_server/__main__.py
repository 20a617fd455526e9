"""``python -m sgaps_server``: start the live server (``--help`` lists every option)."""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    from sgaps_server.app import create_app
    from sgaps_server.config import parse_config

    try:
        config = parse_config(argv)
        app = create_app(config)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"SGAPS server: {config.reconstructor} reconstructor, {config.policy} policy, {config.sample_count} px at "
          f"{config.target_fps:g} fps; page at http://{config.host}:{config.port}/, clients at "
          f"ws://{config.host}:{config.port}/ws/stream" + (f"; recording into {config.record}" if config.record else ""),
          flush=True)
    uvicorn.run(app, host=config.host, port=config.port, ws_max_size=config.max_message_bytes, log_level="warning",
                ws_ping_interval=None)


if __name__ == "__main__":
    main()
