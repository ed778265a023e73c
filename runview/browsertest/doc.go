// Package browsertest drives package runview in a real browser, Debian's
// Chromium through github.com/chromedp/chromedp. It is a module of its
// own, so that the library does not depend on chromedp.
//
//	cd runview/browsertest && go test ./...            # skips without chromium
//	cd runview/browsertest && go test ./... -update    # also rewrites docs/runview.png
package browsertest
