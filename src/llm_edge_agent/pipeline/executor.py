"""The request path for every endpoint that goes to a provider: parse, route, call targets
in order, answer (JSON or a relayed stream), account. ``operations.py`` says what differs
between chat completions, embeddings and legacy completions.

Which target answers, with what retries, breakers, failover and hedging, is decided by
the resilience executor (``attempts.py``); this module supplies one try on one target (send
and decode, or open a stream and hold it until its first content, ``priming.py``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine, Mapping
from functools import partial
from typing import Any, TypeVar

import orjson

from ..cache.broadcast import StreamFlight
from ..cache.coalesce import Flights
from ..cache.controls import CacheControls, parse_controls
from ..cache.keys import canonical_body, key_for
from ..cache.known import KnownBodies, KnownBody
from ..cache.replay import StreamAssembler, replay_chunks
from ..cache.store import STORABLE_FINISH, CachedAnswer, ResponseCache
from ..capabilities import CapabilityTable
from ..config import ResilienceConfig
from ..errors import (
    GatewayError,
    InvalidRequestError,
    ServiceUnavailableError,
    UpstreamClientError,
    UpstreamError,
)
from ..models import ChatRequest
from ..observability.logs import AccessLog
from ..observability.metrics import Metrics
from ..pricing import PricingTable, TokenUsage
from ..providers.base import Translator
from ..resilience.backoff import Deadline
from ..routing import Router, Target
from ..rules import RuleSet
from ..upstream.base import Timeouts, Transport
from .attempts import Attempt, Attempts, Events, Journey, Usable
from .context import RequestContext
from .facts import RequestFacts
from .operations import Operation
from .priming import PrimedStream, prime
from .responses import Response, StreamingResponse, error_response, sse_error_event
from .runtime import ProviderRuntime

T = TypeVar("T")

COST_DECIMALS = 12
CLIENT_CLOSED = 499  # nginx's status for a client that left before the answer ended


def error_kind(error: GatewayError) -> str:
    if isinstance(error, UpstreamClientError):
        return "upstream_client_error"
    return error.code or error.type


def deadline_s(headers: Mapping[str, str]) -> float | None:
    value = headers.get("x-llm-edge-timeout-ms")
    if value is None:
        return None
    try:
        ms = float(value)
    except ValueError:
        ms = -1.0
    if not ms > 0:
        raise InvalidRequestError(
            "x-llm-edge-timeout-ms must be a positive number of milliseconds",
            param="x-llm-edge-timeout-ms",
        )
    return ms / 1000.0


class Pipeline:
    def __init__(
        self,
        operation: Operation,
        router: Router,
        runtimes: Mapping[str, ProviderRuntime],
        pricing: PricingTable,
        metrics: Metrics,
        access_log: AccessLog,
        *,
        cache: ResponseCache | None = None,
        shared_cache: bool = False,
        log_prompts: bool = False,
        deadline_s: float = ResilienceConfig().deadline_s,
        events: Events | None = None,
        rules: RuleSet | None = None,
        capabilities: CapabilityTable | None = None,
    ) -> None:
        self._op = operation
        self._rules = rules
        self._capabilities = capabilities
        self._deadline_s = deadline_s
        events = events or Events()
        self._plain: Attempts[_Fetched] = Attempts(self._unused_answer, events)
        self._streams: Attempts[_Opened] = Attempts(_Opened.discard, events)
        self._cache = cache
        # Byte-identical repeats of bodies the cache answered skip parsing (``known.py``);
        # not with rules (they read the parsed body) nor when prompts are logged.
        self._known = KnownBodies() if cache is not None and not rules and not log_prompts else None
        self._flights: Flights[_Fetched] = Flights()
        self._stream_flights: dict[str, StreamFlight] = {}
        self._shared_cache = shared_cache
        self._router = router
        self._runtimes = runtimes
        self._pricing = pricing
        self._metrics = metrics
        self._log = access_log
        self._log_prompts = log_prompts

    def __repr__(self) -> str:
        return f"Pipeline({self._op.path!r}, {self._router!r})"

    async def handle(self, ctx: RequestContext, raw: bytes) -> Response | StreamingResponse:
        self._metrics.active_inc()
        request: ChatRequest | KnownBody | None = None
        try:
            request = self._known.get(raw) if self._known is not None else None
            if request is None:
                request = self._op.parse(raw, ctx.headers)
            ctx.model = model = request.model
            pinned = ctx.headers.get("x-llm-edge-provider")
            facts: RequestFacts | None = None
            # (A known body is never a ChatRequest here, but rules turn that memo off.)
            if pinned is None and self._rules and isinstance(request, ChatRequest):
                facts = RequestFacts(request.body, request.raw)
                route = self._rules.route_for(
                    model, ctx.headers, ctx.tenant, request.body, facts.prompt_tokens
                )
                model = route or model
            client_deadline_s = deadline_s(ctx.headers)  # a bad value is refused, hit or not
            slot = self._lookup(ctx, request, model, pinned, raw)
            if isinstance(slot, _CacheSlot) and slot.ask_shared:
                slot = await slot.shared() or slot
            if isinstance(slot, CachedAnswer):
                return self._answer_from_cache(ctx, request, slot)
            if not isinstance(request, ChatRequest):
                # A known body whose answer has gone (expired, evicted): parsed in full.
                request = self._op.parse(raw, ctx.headers)
            if facts is None:
                facts = RequestFacts(request.body, request.raw)
            # The budget runs from the request's arrival (ctx.started, on the same clock).
            deadline = Deadline(self._deadline_s, time.perf_counter, start=ctx.started)
            deadline = deadline.shortened(client_deadline_s)
            # Only a miss needs targets. A hit needs no routing: its entry was stored by an
            # identical request that was routed (the key holds the routed model and the
            # pinned provider) under this same configuration.
            targets = self._router.resolve(model, pinned, facts.size)
            if request.stream:
                return await self._open_stream(ctx, request, facts, targets, deadline, slot)
            return await self._complete(ctx, request, facts, targets, deadline, slot)
        except GatewayError as error:
            self._metrics.active_dec()
            self._finish(ctx, request, error.status, None, None, error)
            return error_response(error, ctx.response_headers())
        except asyncio.CancelledError:
            # The client left while the answer was being fetched (or the worker stops).
            self._metrics.active_dec()
            self._finish(ctx, request, CLIENT_CLOSED, None, None, None)
            raise

    # ------------------------------------------------------------------ non-streaming

    async def _complete(
        self,
        ctx: RequestContext,
        request: ChatRequest,
        facts: RequestFacts,
        targets: list[Target],
        deadline: Deadline,
        slot: _CacheSlot | None,
    ) -> Response:
        def fetch() -> Coroutine[Any, Any, _Fetched]:
            return self._fetch(ctx, request, facts, targets, deadline, slot)

        if slot is None:
            fetched, shared = await fetch(), False
        else:
            fetched, shared = await self._flights.join(slot.key, fetch)
        ctx.provider = fetched.provider
        if shared:  # another request's upstream call answered this one: it cost nothing
            ctx.upstream_s = ctx.elapsed_s()
        cost = 0.0 if shared else fetched.cost
        elapsed = ctx.elapsed_s()
        body = with_metadata(fetched.answer, fetched.provider, None, elapsed, cost)
        headers = ctx.response_headers()
        headers["x-llm-edge-overhead-ms"] = f"{ctx.overhead_ms(elapsed):.3f}"
        self._metrics.active_dec()
        saved = fetched.cost if shared else None
        settle = partial(self._finish, ctx, request, 200, fetched.usage, cost, None, saved, elapsed)
        return Response(200, body, headers, settle=settle)

    async def _fetch(
        self,
        ctx: RequestContext,
        request: ChatRequest,
        facts: RequestFacts,
        targets: list[Target],
        deadline: Deadline,
        slot: _CacheSlot | None,
    ) -> _Fetched:
        """The upstream answer, from the first target that gives one (``attempts.py``)."""
        attempt = partial(self._send, ctx, request, slot)
        return await self._run(self._plain, ctx, facts, targets, deadline, attempt)

    async def _run(
        self,
        attempts: Attempts[T],
        ctx: RequestContext,
        facts: RequestFacts,
        targets: list[Target],
        deadline: Deadline,
        attempt: Attempt[T],
    ) -> T:
        """The resilience executor over ``targets``, recording the attempts on ``ctx``."""
        ctx.journey = journey = Journey()
        usable = partial(self._usable, ctx, facts)
        hedge_s = self._hedge_s(targets)
        return await attempts.run(ctx, targets, deadline, journey, attempt, usable, hedge_s)

    async def _send(
        self,
        ctx: RequestContext,
        request: ChatRequest,
        slot: _CacheSlot | None,
        target: Target,
        runtime: ProviderRuntime,
        translator: Translator,
        transport: Transport,
        timeouts: Timeouts,
    ) -> _Fetched:
        """One try on one target."""
        upstream = self._op.encode(translator, request, target.model)
        runtime.in_flight += 1
        started = time.perf_counter()
        try:
            response = await transport.send(upstream, timeouts)
        finally:
            runtime.in_flight -= 1
            waited = time.perf_counter() - started
            ctx.upstream_s += waited
        self._metrics.upstream_latency(runtime.name, waited)
        if response.status != 200:
            raise translator.decode_error(response.status, response.body, response.headers)
        completion = self._op.decode(translator, response.body, request)
        runtime.latency.observe(waited, waited)
        if not completion.body.get("model"):
            completion.body["model"] = target.model  # providers whose answers name none
        cost = self._cost(completion.body.get("model"), target.model, completion.usage)
        answer = orjson.dumps(completion.body)
        if slot is not None and storable(completion.body):
            slot.store(runtime.name, answer, completion.usage, cost)
        return _Fetched(runtime.name, answer, completion.usage, cost, target.model)

    def _unused_answer(self, fetched: _Fetched) -> None:
        """A hedge's second answer: nothing to release, but it was paid for."""
        self._metrics.extra_spend(fetched.provider, fetched.model, fetched.usage, fetched.cost)

    # ------------------------------------------------------------------ streaming

    async def _open_stream(
        self,
        ctx: RequestContext,
        request: ChatRequest,
        facts: RequestFacts,
        targets: list[Target],
        deadline: Deadline,
        slot: _CacheSlot | None,
    ) -> StreamingResponse:
        """The first target's stream that produces content; a failure before that is
        retried or failed over like any other (``priming.py``)."""
        if slot is not None:
            return await self._shared_stream(ctx, request, facts, targets, deadline, slot)
        opened = await self._stream_attempts(ctx, request, facts, targets, deadline)
        ctx.provider = opened.runtime.name
        headers = ctx.response_headers()
        headers["x-llm-edge-overhead-ms"] = f"{ctx.overhead_ms():.3f}"
        relay = _Relay(self, ctx, request, opened, slot)
        return StreamingResponse(relay.chunks(), headers, relay.aclose)

    async def _stream_attempts(
        self,
        ctx: RequestContext,
        request: ChatRequest,
        facts: RequestFacts,
        targets: list[Target],
        deadline: Deadline,
    ) -> _Opened:
        attempt = partial(self._open, ctx, request, deadline)
        return await self._run(self._streams, ctx, facts, targets, deadline, attempt)

    async def _shared_stream(
        self,
        ctx: RequestContext,
        request: ChatRequest,
        facts: RequestFacts,
        targets: list[Target],
        deadline: Deadline,
        slot: _CacheSlot,
    ) -> StreamingResponse:
        """A cacheable stream: join the identical one in flight, or start it (``broadcast``)."""
        flight = self._stream_flights.get(slot.key)
        leader = flight is None
        if flight is None:
            flight = self._stream_flights[slot.key] = StreamFlight(slot.key)
            pump = self._pump(flight, ctx, request, facts, targets, deadline, slot)
            flight.pump = asyncio.ensure_future(pump)
        flight.join()
        try:
            provider = await asyncio.shield(flight.opened)
        except BaseException:
            self._leave(flight)
            raise
        ctx.provider = provider
        if not leader:  # another request's upstream stream: all waiting was upstream time
            ctx.upstream_s = ctx.elapsed_s()
        headers = ctx.response_headers()
        headers["x-llm-edge-overhead-ms"] = f"{ctx.overhead_ms():.3f}"
        reader = _Reader(self, ctx, request, flight, leader)
        return StreamingResponse(reader.chunks(), headers, reader.aclose)

    async def _pump(
        self,
        flight: StreamFlight,
        ctx: RequestContext,
        request: ChatRequest,
        facts: RequestFacts,
        targets: list[Target],
        deadline: Deadline,
        slot: _CacheSlot,
    ) -> None:
        """Open the upstream stream and copy its client bytes into the flight's broadcast;
        belongs to no client (``StreamFlight.leave`` cancels it when all have left)."""
        broadcast = flight.broadcast
        opened: _Opened | None = None
        try:
            try:
                opened = await self._stream_attempts(ctx, request, facts, targets, deadline)
            except Exception as error:
                flight.opened.set_exception(error)
                return
            flight.opened.set_result(opened.runtime.name)
            primed = opened.primed
            decoder = primed.decoder
            assembler = StreamAssembler()
            runtime, model = opened.runtime.name, opened.target.model

            def conclude(failure: UpstreamError | None) -> None:
                flight.failure = failure
                flight.usage = decoder.usage
                body = assembler.result() if failure is None else None
                reported = body.get("model") if body is not None else None
                flight.cost = self._cost(reported, model, decoder.usage)
                if body is not None and storable(body):
                    slot.store(runtime, orjson.dumps(body), decoder.usage, flight.cost)

            concluded = False
            try:
                async for out in client_bytes(primed):
                    assembler.feed(out)
                    if primed.finished:
                        # Stored before any reader sees the end: a client that asks again
                        # at once finds it, and one that hangs up cannot cancel the store.
                        concluded = True
                        conclude(decoder.error)
                    broadcast.append(out)
                if not concluded:
                    conclude(decoder.error)
            except UpstreamError as error:
                conclude(error)
                broadcast.append(sse_error_event(error))
            if flight.leader_left:  # the client that started it is gone: the spend stays
                self._metrics.extra_spend(runtime, model, flight.usage, flight.cost)
        finally:
            if not flight.opened.done():
                flight.opened.cancel()
            broadcast.close()
            if self._stream_flights.get(flight.key) is flight:
                del self._stream_flights[flight.key]
            if opened is not None:
                opened.release(flight.failure)

    def _leave(self, flight: StreamFlight) -> None:
        flight.leave()
        if flight.readers <= 0 and self._stream_flights.get(flight.key) is flight:
            del self._stream_flights[flight.key]  # abandoned: the next request starts afresh

    async def _open(
        self,
        ctx: RequestContext,
        request: ChatRequest,
        deadline: Deadline,
        target: Target,
        runtime: ProviderRuntime,
        translator: Translator,
        transport: Transport,
        timeouts: Timeouts,
    ) -> _Opened:
        """One try on one target: open the stream and hold it until its first content.
        On success the bulkhead slot stays held until the relay ends."""
        upstream = self._op.encode(translator, request, target.model)
        runtime.in_flight += 1
        started = time.perf_counter()
        try:
            stream = await transport.open_stream(upstream, timeouts)
            try:
                if stream.status != 200:
                    body = await stream.read()
                    raise translator.decode_error(stream.status, body, stream.headers)
                decoder = self._op.stream_decoder(translator, request)
                primed = await prime(stream, decoder, runtime.name, deadline.remaining_s())
            except BaseException:
                stream.close()
                raise
        except BaseException:
            runtime.in_flight -= 1
            ctx.upstream_s += time.perf_counter() - started
            raise
        waited = time.perf_counter() - started
        ctx.upstream_s += waited
        self._metrics.upstream_latency(runtime.name, waited)
        runtime.latency.observe(waited, waited)
        return _Opened(target, runtime, primed)

    # ------------------------------------------------------------------ cache

    def _lookup(
        self,
        ctx: RequestContext,
        request: ChatRequest | KnownBody,
        model: str,
        pinned: str | None,
        raw: bytes,
    ) -> _CacheSlot | CachedAnswer | None:
        """An answer from L1, or the slot where this request's answer will be stored (and
        which asks L2 first, if there is one)."""
        cache = self._cache
        if cache is None:
            return None
        controls = parse_controls(ctx.headers)
        if not controls.store and not controls.lookup:
            return None  # no-store: bypass
        ctx.cache_status = "miss"
        scope = None if self._shared_cache else (ctx.tenant or ANONYMOUS_SCOPE)
        # The model as routed: a rule that picked another route must not share its entries.
        if pinned is not None:
            model = f"{pinned}/{model}"
        if isinstance(request, KnownBody):
            canonical = request.canonical
            key = request.key(self._op.kind, model, scope)
        else:
            canonical = canonical_body(request.body)
            key = key_for(self._op.kind, canonical, model, scope)
        if controls.lookup:
            answer = cache.get_local(key, controls)
            if answer is not None:
                if self._known is not None and isinstance(request, ChatRequest):
                    known = KnownBody(
                        model=request.model,
                        stream=request.stream,
                        include_usage=request.include_usage,
                        canonical=canonical,
                    )
                    self._known.add(raw, known)
                return answer
        return _CacheSlot(cache, key, controls)

    def _answer_from_cache(
        self, ctx: RequestContext, request: ChatRequest | KnownBody, answer: CachedAnswer
    ) -> Response | StreamingResponse:
        ctx.cache_status = answer.status
        ctx.provider = answer.provider
        headers = ctx.response_headers()
        elapsed = ctx.elapsed_s()
        headers["x-llm-edge-overhead-ms"] = f"{ctx.overhead_ms(elapsed):.3f}"
        self._metrics.active_dec()
        # A hit costs nothing; what the stored answer cost is the saving.
        if request.stream:
            self._finish(ctx, request, 200, answer.usage, 0.0, None, saved=answer.cost)
            events = replay_chunks(orjson.loads(answer.body), request.include_usage)
            return StreamingResponse(_replay(events), headers, _nothing)
        data = with_metadata(answer.body, answer.provider, answer.tier, elapsed, 0.0)
        settle = partial(
            self._finish, ctx, request, 200, answer.usage, 0.0, None, answer.cost, elapsed
        )
        return Response(200, data, headers, settle=settle)

    # ------------------------------------------------------------------ helpers

    def _usable(
        self, ctx: RequestContext, facts: RequestFacts, target: Target
    ) -> Usable | GatewayError:
        """The target's provider ready to take the request, or why it cannot. (Circuit
        and bulkhead are checked by the executor, at the moment of each attempt.)"""
        runtime = self._runtimes[target.provider]
        ctx.provider = runtime.name
        translator, transport = runtime.translator, runtime.transport
        if translator is None or transport is None:
            return ServiceUnavailableError(
                runtime.unsupported or f"provider {runtime.name!r} is not usable"
            )
        if not self._op.supported(translator):
            return InvalidRequestError(
                f"provider {runtime.name!r} (type {runtime.type}) does not support {self._op.path}",
                param="model",
                code="unsupported_endpoint",
            )
        if self._capabilities is not None:
            reason = facts.unfit(self._capabilities.lookup(target.model), target.model)
            if reason is not None:
                code = "context_length_exceeded" if "context window" in reason else None
                return InvalidRequestError(
                    reason, param="messages", code=code or "unsupported_capability"
                )
        return runtime, translator, transport

    def _hedge_s(self, targets: list[Target]) -> float | None:
        """How long the first sequence runs alone before a hedge starts, if the route
        hedges: ``hedge_after_ms``, or ``hedge_percentile`` of the first target's latency."""
        route = self._router.route_config(targets[0].route) if targets else None
        if route is None:
            return None
        if route.hedge_after_ms > 0:
            return route.hedge_after_ms / 1000.0
        if route.hedge_percentile > 0:
            stats = self._runtimes[targets[0].provider].latency
            return stats.percentile(route.hedge_percentile)
        return None

    def _cost(self, reported: Any, model: str, usage: TokenUsage | None) -> float | None:
        if usage is None:
            return None
        cost = self._pricing.cost(reported, usage) if isinstance(reported, str) else None
        if cost is None:
            cost = self._pricing.cost(model, usage)
        # Sums of per-token prices carry float noise (6.5999999999999995e-06).
        return None if cost is None else round(cost, COST_DECIMALS)

    def _finish(
        self,
        ctx: RequestContext,
        request: ChatRequest | KnownBody | None,
        status: int,
        usage: TokenUsage | None,
        cost: float | None,
        error: GatewayError | None,
        saved: float | None = None,
        elapsed: float | None = None,
    ) -> None:
        """Account for a finished request: metrics and its log line. ``elapsed``: when the
        answer was ready, for a call made after it was sent (``Response.settle``)."""
        if elapsed is None:
            elapsed = ctx.elapsed_s()
        provider = ctx.provider or "none"
        model = ctx.model if ctx.provider else "unknown"
        self._metrics.request_done(provider, model or "unknown", status, elapsed, usage, cost)
        if error is not None and status != 200:
            self._metrics.error(error_kind(error))
        if not self._log.enabled:
            return
        record: dict[str, Any] = {
            "level": "info" if status < 500 else "error",
            "msg": "request",
            "request_id": ctx.request_id,
            "path": self._op.path,
            "model": ctx.model,
            "provider": ctx.provider,
            "status": status,
            "stream": request.stream if request is not None else None,
            "cache": ctx.cache_status,
            "latency_ms": round(elapsed * 1000.0, 3),
            "upstream_ms": round(ctx.upstream_s * 1000.0, 3),
            "prompt_tokens": usage.prompt_tokens if usage else None,
            "completion_tokens": usage.completion_tokens if usage else None,
            "cached_tokens": usage.cached_tokens if usage else None,
            "cost_usd": cost,
            "tenant": ctx.tenant,
        }
        if saved is not None:
            record["saved_cost_usd"] = saved
        if ctx.journey is not None:
            record.update(ctx.journey.fields())
        if error is not None:
            record["error"] = error.message
            record["error_type"] = error_kind(error)
        if self._log_prompts and isinstance(request, ChatRequest):
            record["messages"] = request.body.get("messages")
        self._log.write(record)


class _Opened:
    """A stream that produced its first content, on the target that produced it."""

    __slots__ = ("primed", "runtime", "target")

    def __init__(self, target: Target, runtime: ProviderRuntime, primed: PrimedStream) -> None:
        self.target = target
        self.runtime = runtime
        self.primed = primed

    def __repr__(self) -> str:
        return f"_Opened({self.runtime.name!r}, {self.primed!r})"

    def discard(self) -> None:
        """A hedge's second stream, not relayed: release the connection and the slot."""
        self.primed.close()
        self.runtime.in_flight -= 1

    def release(self, failure: GatewayError | None) -> None:
        """The relay is over: release the connection and the bulkhead slot; a failure
        after the first content is too late to fail over, but the breaker counts it."""
        if failure is not None and failure.retryable:
            permit = self.runtime.breaker.admit()
            if permit is not None:
                permit.failure()
        self.primed.stream.close()
        self.runtime.in_flight -= 1


class _Relay:
    """One upstream stream relayed to one client, accounted for exactly once.

    The accounting (release the connection and the bulkhead slot, metrics, the log line)
    runs when the relay ends, however it ends: at the end of the stream, on an error, when
    the client leaves mid-stream, or when the server closes the relay before the first chunk
    was ever asked for (a client gone before the headers were written), where a generator's
    own ``finally`` would never run.
    """

    __slots__ = (
        "_assembler",
        "_ctx",
        "_done",
        "_failure",
        "_gen",
        "_opened",
        "_pipeline",
        "_request",
        "_slot",
        "_status",
    )

    def __init__(
        self,
        pipeline: Pipeline,
        ctx: RequestContext,
        request: ChatRequest,
        opened: _Opened,
        slot: _CacheSlot | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._slot = slot
        # Only a stream that will be stored is assembled: the copy costs per chunk.
        self._assembler = StreamAssembler() if slot is not None else None
        self._ctx = ctx
        self._request = request
        self._opened = opened
        self._status = CLIENT_CLOSED
        self._failure: GatewayError | None = None
        self._done = False
        self._gen: AsyncGenerator[bytes, None] | None = None

    def __repr__(self) -> str:
        return f"_Relay({self._opened!r}, status={self._status}, done={self._done})"

    def chunks(self) -> AsyncIterator[bytes]:
        self._gen = self._relay()
        return self._gen

    async def _relay(self) -> AsyncGenerator[bytes, None]:
        primed = self._opened.primed
        decoder = primed.decoder
        assembler = self._assembler
        concluded = False
        try:
            async for out in client_bytes(primed):
                if assembler is not None:
                    assembler.feed(out)
                if primed.finished:  # stored before the client sees the end
                    concluded = True
                    self._conclude(decoder.error)
                yield out
            if not concluded:
                self._conclude(decoder.error)
        except UpstreamError as error:
            self._failure = error
            self._status = error.status
            yield sse_error_event(error)
        finally:
            self._finish()

    def _conclude(self, failure: UpstreamError | None) -> None:
        self._failure = failure
        self._status = 200 if failure is None else failure.status
        self._store()

    def _store(self) -> None:
        if self._slot is None or self._assembler is None or self._failure is not None:
            return
        body = self._assembler.result()  # None for an incomplete or failed stream
        if body is not None and storable(body):
            usage = self._opened.primed.decoder.usage
            model = self._opened.target.model
            cost = self._pipeline._cost(body.get("model"), model, usage)
            self._slot.store(self._opened.runtime.name, orjson.dumps(body), usage, cost)

    async def aclose(self) -> None:
        if self._gen is not None:
            await self._gen.aclose()
        self._finish()

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        opened = self._opened
        decoder = opened.primed.decoder
        if self._status == CLIENT_CLOSED and decoder.complete and self._failure is None:
            self._status = 200  # the client left after the whole answer reached it
        opened.release(self._failure)
        pipeline = self._pipeline
        pipeline._metrics.active_dec()
        cost = pipeline._cost(None, opened.target.model, decoder.usage)
        pipeline._finish(self._ctx, self._request, self._status, decoder.usage, cost, self._failure)


class _Reader:
    """One client of a shared stream (``_Pipeline._shared_stream``): reads the broadcast
    from its start and accounts for its own request. The first client is charged what the
    stream cost; the others cost nothing and record the saving."""

    __slots__ = (
        "_consumed",
        "_ctx",
        "_done",
        "_flight",
        "_gen",
        "_leader",
        "_pipeline",
        "_request",
    )

    def __init__(
        self,
        pipeline: Pipeline,
        ctx: RequestContext,
        request: ChatRequest,
        flight: StreamFlight,
        leader: bool,
    ) -> None:
        self._pipeline = pipeline
        self._ctx = ctx
        self._request = request
        self._flight = flight
        self._leader = leader
        self._consumed = False
        self._done = False
        self._gen: AsyncGenerator[bytes, None] | None = None

    def __repr__(self) -> str:
        return f"_Reader(leader={self._leader}, {self._flight!r})"

    def chunks(self) -> AsyncIterator[bytes]:
        self._gen = self._read()
        return self._gen

    async def _read(self) -> AsyncGenerator[bytes, None]:
        try:
            async for piece in self._flight.broadcast.read():
                yield piece
            self._consumed = True
        finally:
            self._finish()

    async def aclose(self) -> None:
        if self._gen is not None:
            await self._gen.aclose()
        self._finish()

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        flight = self._flight
        pipeline = self._pipeline
        pipeline._leave(flight)
        pipeline._metrics.active_dec()
        failure = flight.failure
        if not self._consumed:
            usage = cost = None
            if self._leader and flight.broadcast.done:  # the pump is over: the spend is known
                usage, cost = flight.usage, flight.cost
            elif self._leader:
                flight.leader_left = True  # the pump records the spend when it is over
            pipeline._finish(self._ctx, self._request, CLIENT_CLOSED, usage, cost, None)
            return
        status = 200 if failure is None else failure.status
        if self._leader:
            cost, saved = flight.cost, None
        else:
            cost, saved = 0.0, flight.cost
        pipeline._finish(self._ctx, self._request, status, flight.usage, cost, failure, saved=saved)


async def client_bytes(primed: PrimedStream) -> AsyncIterator[bytes]:
    """A primed stream's client bytes: what was held, then the rest as it is decoded.
    Raises ``UpstreamError`` when the upstream fails or cuts the stream."""
    decoder = primed.decoder
    held, primed.held = primed.held, []
    if primed.ended:
        for i, out in enumerate(held, 1):
            primed.finished = i == len(held)
            yield out
        return
    # The piece with the upstream's end marker waits for the end of its body: then it is
    # the last, and goes out flagged ``finished`` (see ``PrimedStream.finished``). Priming
    # may have read the marker already: then it is in the last piece held.
    end = held.pop() if held and decoder.ended else b""
    for out in held:
        yield out
    async for data in primed.chunks:
        out = decoder.feed(data)
        if decoder.ended:
            end += out
        elif out:
            yield out
    last = end + decoder.finish()
    if last:
        primed.finished = True
        yield last


ANONYMOUS_SCOPE = "anonymous"  # the tenant of requests that sent no key to an open gateway


class _CacheSlot:
    """Where a missed request's answer goes once it is complete and successful."""

    __slots__ = ("_cache", "_controls", "ask_shared", "key")

    def __init__(self, cache: ResponseCache, key: str, controls: CacheControls) -> None:
        self._cache = cache
        self.key = key
        self._controls = controls
        self.ask_shared = controls.lookup and cache.l2 is not None  # L1 has been asked

    async def shared(self) -> CachedAnswer | None:
        """The answer from L2, if it has a fresh one."""
        return await self._cache.get_shared(self.key, self._controls)

    def __repr__(self) -> str:
        return f"_CacheSlot({self.key})"

    def store(
        self, provider: str, body: bytes, usage: TokenUsage | None, cost: float | None
    ) -> None:
        self._cache.put(self.key, provider, body, self._controls, usage, cost)


def storable(body: Mapping[str, Any]) -> bool:
    """Only whole answers: every choice finished by itself or to call tools (embeddings have
    no choices and are always whole)."""
    choices = body.get("choices")
    if choices is None:
        return "data" in body
    return bool(choices) and all(
        isinstance(c, dict) and c.get("finish_reason") in STORABLE_FINISH for c in choices
    )


# ``,"metadata":{...,"latency_ms":`` per (provider, tier): the part of the metadata that
# does not change between answers (provider names come from configurations: few).
_METADATA_HEADS: dict[tuple[str, str | None], bytes] = {}
_METADATA_HEADS_MAX = 256


def _metadata_head(provider: str, tier: str | None) -> bytes:
    head = _METADATA_HEADS.get((provider, tier))
    if head is None:
        if len(_METADATA_HEADS) >= _METADATA_HEADS_MAX:
            _METADATA_HEADS.clear()
        head = _METADATA_HEADS[provider, tier] = b"".join(
            (
                b',"metadata":{"provider":',
                orjson.dumps(provider),
                b',"cached":true,"cache_tier":' if tier is not None else b',"cached":false,',
                orjson.dumps(tier) if tier is not None else b'"cache_tier":null',
                b',"latency_ms":',
            )
        )
    return head


def with_metadata(
    body: bytes, provider: str, tier: str | None, elapsed_s: float, cost: float | None
) -> bytes:
    """The answer's JSON object with the seeds' ``metadata`` appended, without re-parsing."""
    return b"".join(
        (
            body[:-1],
            _metadata_head(provider, tier),
            orjson.dumps(round(elapsed_s * 1000.0, 3)),
            b',"cost_usd":',
            orjson.dumps(cost),
            b"}}",
        )
    )


async def _replay(events: list[bytes]) -> AsyncIterator[bytes]:
    for event in events:
        yield event


async def _nothing() -> None:
    """A replayed stream holds nothing to release: it was accounted when it was served."""


class _Fetched:
    """An upstream answer, as bytes without ``metadata``, shareable between requests."""

    __slots__ = ("answer", "cost", "model", "provider", "usage")

    def __init__(
        self,
        provider: str,
        answer: bytes,
        usage: TokenUsage | None,
        cost: float | None,
        model: str = "",
    ) -> None:
        self.provider = provider
        self.answer = answer
        self.usage = usage
        self.cost = cost
        self.model = model

    def __repr__(self) -> str:
        return f"_Fetched({self.provider!r}, {len(self.answer)} bytes)"
