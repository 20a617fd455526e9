"""The SGAPS live server: game clients stream sampled pixels, the server rebuilds their frames and says
where to sample next, over the seed design's WebSocket protocol.

    python -m sgaps_server --port 8765            # then open http://127.0.0.1:8765/ in a browser
    python agents/stream.py --server ws://127.0.0.1:8765/ws/stream --player heuristic --stage 1-1 --steps 900

Messages are those of ``sgaps_env.wire`` (msgpack + zlib, one per binary WebSocket message)::

    client                                   server
      connect (Authorization: Bearer <token>)  ->
                                               <-  connection_ack (client id, server version)
      session_start (key, 240x256, D, colour)  ->
                                               <-  session_start_ack (N samples, D, target fps, model, description kind)
                                               <-  uv_coordinates (frame 0)
      [frame_truth (t): opt-in, evaluation]    ->
      frame_data (t)                           ->
                                               <-  uv_coordinates (t + 1)          ... per frame
      heartbeat                                ->
                                               <-  heartbeat_ack
                                               <-  error (code, reason) for a refused message

| endpoint | what |
|---|---|
| ``/ws/stream`` | the protocol above |
| ``/`` | a page with every live session's reconstruction, bytes, latency and (with truth) PSNR |
| ``/api/sessions``, ``/api/sessions/{id}``, ``/api/sessions/{id}/frame.png`` | what the page reads |
| ``/metrics`` | Prometheus text format |

What a refused message does (``sgaps_server.session`` has the codes): a message that does not decode,
a frame that does not fit the negotiated shape, a state outside the fields' ranges, a frame out of
order or over the message rate gets an ``error`` (400, 409, 429) and **the session survives**,
waiting for the same frame again; ``max_errors`` refusals in a row **close it** (1008). A message over
``max_message_bytes`` (1009), silence past ``heartbeat_timeout_s`` (4408), a client that stops reading
(4429), a bad ``session_start`` (1008) and a server error (1011) close the session with that code.
A wrong token is refused before the WebSocket opens (HTTP 403); a full server sends ``error`` 503 and
closes (1013). Each session has its own memory and policy; a fault in one reaches no other.

Layering: this package sits above ``models`` and ``agents`` (it runs their reconstructors and
policies) and below ``experiments``.
"""
