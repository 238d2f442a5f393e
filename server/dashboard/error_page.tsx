/**
 * Errors as pages: what the API answers in JSON, the dashboard shows as a
 * page with the same status and message.
 * @module
 */
import type { Context, ErrorHandler } from "hono";
import type { Logger } from "../../util/log.ts";
import { HttpError } from "../http_error.ts";
import type { DashEnv } from "./_auth.ts";
import { render } from "./_layout.tsx";

const TITLES: Record<number, string> = {
  403: "Not allowed",
  404: "Not found",
  409: "Cannot do that now",
  422: "Cannot do that",
  429: "Slow down",
  503: "Unavailable",
};

/** The dashboard's `onError`: known errors as their page, the rest a logged 500 page. */
export function errorPage(log: Logger): ErrorHandler<DashEnv> {
  return (err, c) => {
    if (err instanceof HttpError) return showError(c, err.status, err.message);
    log.error("dashboard request failed", {
      method: c.req.method,
      path: c.req.path,
      error: String(err),
    });
    return showError(c, 500, "Something went wrong on the server: the details are in its log");
  };
}

/** Renders one error page. */
export function showError(
  c: Context<DashEnv>,
  status: HttpError["status"],
  message: string,
): Response | Promise<Response> {
  const title = TITLES[status] ??
    (status >= 500 ? "Something went wrong" : "Cannot show this page");
  // The guard may not have run (or failed): show the user only if it did.
  const auth = c.get("auth") as DashEnv["Variables"]["auth"] | undefined;
  return render(
    c,
    { title, auth, csrf: c.get("csrf") },
    <section class="error-page">
      <p class="error-status">{status}</p>
      <h1>{title}</h1>
      <p class="error-message">{message}</p>
      <p>
        <a class="button" href="/">Back to your apps</a>
      </p>
    </section>,
    status,
  );
}
