"""A client of the Agency service, as a case-management system would use it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import grpc

from psi_core.errors import PeerError
from psi_proto.v1 import agency_pb2, agency_pb2_grpc
from psi_rpc.status import error_from_rpc

_PEER = "agency service"


class AgencyClient:
    def __init__(self, channel: grpc.Channel, *, timeout: float = 60.0) -> None:
        self._stub = agency_pb2_grpc.AgencyStub(channel)
        self._timeout = timeout

    def submit(
        self,
        header: agency_pb2.QueryHeader,
        batches: Iterable[list[agency_pb2.Subject]],
        *,
        timeout: float = 3600.0,
    ) -> agency_pb2.QueryStatus:
        """Send a query's header, its subjects and the end message declaring their count.

        ``batches`` is read while the call streams. If reading it raises (a file error
        met half-way), the call is cancelled, the end message is never sent (so the
        agency keeps nothing, however the transport reports the cancel) and that
        exception is raised here, not a transport status.
        """
        failure: list[Exception] = []
        calls: list[grpc.Future] = []

        def requests() -> Iterator[agency_pb2.SubmitQueryRequest]:
            yield agency_pb2.SubmitQueryRequest(header=header)
            count = 0
            try:
                for batch in batches:
                    yield agency_pb2.SubmitQueryRequest(
                        batch=agency_pb2.SubjectBatch(subjects=batch)
                    )
                    count += len(batch)
            except Exception as exc:
                failure.append(exc)
                for call in calls:
                    call.cancel()
                return
            yield agency_pb2.SubmitQueryRequest(end=agency_pb2.SubmitEnd(subject_count=count))

        call = self._stub.SubmitQuery.future(requests(), timeout=timeout)
        calls.append(call)
        if failure:
            call.cancel()
        try:
            result = call.result()
        except (grpc.RpcError, grpc.FutureCancelledError) as exc:
            if failure:
                raise failure[0] from None
            if isinstance(exc, grpc.RpcError):
                raise error_from_rpc(exc, _PEER) from exc
            raise PeerError(f"the call to the {_PEER} was cancelled") from exc
        if failure:
            raise failure[0]
        return result

    def get(self, query_id: str) -> agency_pb2.QueryStatus:
        try:
            return self._stub.GetQuery(
                agency_pb2.GetQueryRequest(query_id=query_id), timeout=self._timeout
            )
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, _PEER) from exc

    def watch(
        self, query_id: str, *, timeout: float = 86_400.0
    ) -> Iterator[agency_pb2.QueryStatus]:
        try:
            yield from self._stub.WatchQuery(
                agency_pb2.GetQueryRequest(query_id=query_id), timeout=timeout
            )
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, _PEER) from exc

    def matches(self, query_id: str, *, timeout: float = 3600.0) -> Iterator[agency_pb2.Match]:
        try:
            yield from self._stub.ListMatches(
                agency_pb2.ListMatchesRequest(query_id=query_id), timeout=timeout
            )
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, _PEER) from exc

    def list_queries(
        self, *, state: int = 0, case_id: str = "", page_size: int = 100
    ) -> Iterator[agency_pb2.QueryStatus]:
        """Every query (newest first) matching the filters, fetched page by page."""
        token = ""
        while True:
            request = agency_pb2.ListQueriesRequest(
                page_size=page_size, page_token=token, state=state, case_id=case_id
            )
            try:
                page = self._stub.ListQueries(request, timeout=self._timeout)
            except grpc.RpcError as exc:
                raise error_from_rpc(exc, _PEER) from exc
            yield from page.queries
            if not page.next_page_token:
                return
            token = page.next_page_token
