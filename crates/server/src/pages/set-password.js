// Moves the one-time token from the link's fragment (never sent to any server, never in a
// Referer) into the form, and takes it out of the address bar and the history.
(function () {
  var m = /(?:^#|&)token=([^&]+)/.exec(window.location.hash);
  if (m) {
    document.getElementById('token').value = decodeURIComponent(m[1]);
    history.replaceState(null, '', window.location.pathname);
  }
})();
