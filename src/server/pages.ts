/** The sidecar's own small HTML pages. No page shows a stack trace, a token or configuration. */

export interface PageContent {
  title: string;
  message: string;
  /** The precise reason, shown only when `errors.detailed` is on. */
  detail?: string;
  requestId: string;
  /** A link offered to the user, e.g. "Sign in again". */
  link?: { href: string; text: string };
  /** A button that posts to `action` (a confirmation), shown before the link. */
  form?: { action: string; button: string };
  /** Where the browser goes at once (a meta refresh: a navigation of this page's own site). */
  refreshTo?: string;
}

const STYLE =
  'body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#1b1b1b}' +
  'h1{font-size:1.4rem}p{line-height:1.5}.detail{background:#f4f4f4;padding:.6rem;border-radius:4px}' +
  'small{color:#555}a{color:#0b57d0}code{font-family:ui-monospace,Menlo,Consolas,monospace}' +
  'button{font:inherit;padding:.4rem 1rem}';

export function renderPage(content: PageContent): string {
  const detail = content.detail ? `<p class="detail"><strong>Reason:</strong> ${escapeHtml(content.detail)}</p>` : '';
  const form = content.form ? `<form method="post" action="${escapeHtml(content.form.action)}"><button type="submit">${escapeHtml(content.form.button)}</button></form>` : '';
  const link = content.link ? `<p><a href="${escapeHtml(content.link.href)}">${escapeHtml(content.link.text)}</a></p>` : '';
  const refresh = content.refreshTo ? `<meta http-equiv="refresh" content="0;url=${escapeHtml(content.refreshTo)}">` : '';
  return (
    '<!doctype html><html lang="en"><head><meta charset="utf-8">' +
    `<meta name="viewport" content="width=device-width, initial-scale=1">${refresh}` +
    `<title>${escapeHtml(content.title)}</title><style>${STYLE}</style></head>` +
    `<body><main><h1>${escapeHtml(content.title)}</h1><p>${escapeHtml(content.message)}</p>${detail}${form}${link}` +
    `<p><small>Request ID: <code>${escapeHtml(content.requestId)}</code></small></p></main></body></html>`
  );
}

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => HTML_ESCAPES[char]!);
}
