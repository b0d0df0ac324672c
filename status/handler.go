package status

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Response headers set on every answer.
const (
	contentTypeHTML = "text/html; charset=utf-8"
	contentTypeJSON = "application/json"
	// contentSecurityPolicy allows the inline style sheet and nothing else:
	// no script, no frame, no outside resource.
	contentSecurityPolicy = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

// Handler serves the status page. It is an [http.Handler] and safe for
// concurrent use; build it with [New].
type Handler struct {
	cfg     Config
	refresh int     // seconds, 0: no refresh
	trends  *trends // nil: no charts
}

// New returns the handler of the status page of cfg.Tree and cfg.Probes,
// either of which may be nil, with the defaults of [Config]. It returns an
// error wrapping [ErrInvalidConfig] when cfg is invalid. The loops' trend
// charts fill while [Handler.Run] runs.
func New(cfg Config) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	h := &Handler{cfg: cfg}
	if cfg.TrendInterval > 0 {
		h.trends = newTrends(cfg.TrendInterval, cfg.TrendWindow)
	}
	if cfg.Refresh > 0 {
		h.refresh = int(cfg.Refresh / time.Second)
	}
	return h, nil
}

// ServeHTTP answers GET and HEAD with the page as HTML, or with the
// [Snapshot] as JSON when the query has format=json or the Accept header
// prefers application/json to text/html. It answers 200 whatever the
// verdict (the probes answer 503; this page is for people), 400 for an
// unknown format and 405 for any other method. Every answer has
// Cache-Control: no-store and X-Content-Type-Options: nosniff, and a
// content security policy that allows no script.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Content-Security-Policy", contentSecurityPolicy)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	asJSON, err := wantsJSON(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	snap := h.Snapshot()
	var buf bytes.Buffer
	contentType := contentTypeHTML
	if asJSON {
		contentType = contentTypeJSON
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		err = enc.Encode(snap)
	} else {
		err = page.Execute(&buf, view{Snapshot: snap, RefreshSeconds: h.refresh,
			HasTree: h.cfg.Tree != nil, HasProbes: h.cfg.Probes != nil, HasTrends: h.trends != nil, TrendWindow: h.cfg.TrendWindow})
	}
	if err != nil {
		http.Error(w, "rendering the status page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	hdr.Set("Content-Type", contentType)
	hdr.Set("Content-Length", strconv.Itoa(buf.Len()))
	hdr.Add("Vary", "Accept")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

// wantsJSON reads the format asked for: the query's format (html or json)
// first, then the Accept header.
func wantsJSON(r *http.Request) (bool, error) {
	switch f := r.URL.Query().Get("format"); f {
	case "json":
		return true, nil
	case "html":
		return false, nil
	case "":
	default:
		return false, fmt.Errorf("unknown format %q: want html or json", f)
	}
	var jsonQ, htmlQ float64
	for _, v := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(v, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			q := 1.0
			if s, ok := params["q"]; ok {
				if q, err = strconv.ParseFloat(s, 64); err != nil {
					continue
				}
			}
			switch mt {
			case "application/json":
				jsonQ = max(jsonQ, q)
			case "text/html":
				htmlQ = max(htmlQ, q)
			}
		}
	}
	return jsonQ > 0 && jsonQ > htmlQ, nil
}
