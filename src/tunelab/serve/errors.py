"""Errors in the OpenAI shape: {"error": {"message", "type", "param", "code"}}, with the right status."""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

# status -> the `type` OpenAI's API gives errors of that status
TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
         405: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error",
         500: "server_error", 503: "server_error", 504: "timeout_error"}


class APIError(Exception):
    """An error answered to the client as it is: status, message, offending param, short code."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": TYPES.get(status, "invalid_request_error"),
                      "param": param, "code": code}}


def error_response(e: APIError) -> JSONResponse:
    return JSONResponse(error_body(e.status, e.message, e.param, e.code), status_code=e.status, headers=e.headers)


def install_handlers(app) -> None:
    """Every error the app answers, its own or the framework's (404 route, 405), in the OpenAI shape."""

    async def on_api_error(request: Request, e: APIError):
        return error_response(e)

    async def on_http(request: Request, e: HTTPException):
        return JSONResponse(error_body(e.status_code, str(e.detail)), status_code=e.status_code,
                            headers=getattr(e, "headers", None))

    async def on_validation(request: Request, e: RequestValidationError):
        return JSONResponse(error_body(400, str(e.errors())), status_code=400)

    async def on_unexpected(request: Request, e: Exception):
        return JSONResponse(error_body(500, f"internal error: {type(e).__name__}"), status_code=500)

    app.add_exception_handler(APIError, on_api_error)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(Exception, on_unexpected)
