/* Clientside halves of Mission Control: panel poll, theme, tab visibility, live badge ages. */
(function () {
  "use strict";

  var FONT = 'Inter, "Segoe UI", system-ui, -apple-system, Roboto, "Helvetica Neue", sans-serif';
  var COLORWAY = ["#3b6fd4", "#f08a24", "#2aa876", "#e0474c", "#8e5bd6", "#1aa6b7", "#d6a21e",
    "#d75fa5", "#7a8b99", "#5a9e3a"];

  function template(ink, muted, grid, line, surface) {
    var axis = {
      gridcolor: grid, linecolor: line, tickcolor: line, zerolinecolor: grid,
      tickfont: {color: muted}, title: {font: {color: muted}}
    };
    return {
      layout: {
        paper_bgcolor: "rgba(0,0,0,0)",
        plot_bgcolor: "rgba(0,0,0,0)",
        font: {family: FONT, color: ink, size: 13},
        colorway: COLORWAY,
        xaxis: axis,
        yaxis: axis,
        legend: {font: {color: muted}},
        hoverlabel: {bgcolor: surface, bordercolor: line, font: {color: ink, family: FONT}}
      },
      data: {pie: [{marker: {line: {color: surface, width: 2}}}]}
    };
  }

  var TEMPLATES = {
    light: template("#1b2433", "#5b6678", "#e8ebf0", "#cfd5de", "#ffffff"),
    dark: template("#e6eaf0", "#9aa4b2", "#2a3340", "#3a4452", "#161b22")
  };

  function resolveTheme(theme) {
    if (theme === "dark" || theme === "light") {
      return theme;
    }
    var dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
    return dark ? "dark" : "light";
  }

  function pageVisible() {
    return document.visibilityState !== "hidden";
  }

  var noUpdate = function () {
    return window.dash_clientside.no_update;
  };

  /* What the header's freshness indicator shows: when a poll was last answered, whether the
     last one failed, whether refresh is off and whether the tab is hidden. */
  var freshness = {answeredAt: null, failedAt: null, refreshOff: false, hidden: false};

  /* A 4xx is an answer (the server is there); 5xx and no answer at all are not. */
  function noteAnswer(status) {
    if (status >= 500) {
      freshness.failedAt = Date.now();
    } else {
      freshness.answeredAt = Date.now();
      freshness.failedAt = null;
    }
    renderFreshness();
  }

  function noteFailure() {
    freshness.failedAt = Date.now();
    renderFreshness();
  }

  /* The panel poll: one POST /poll per tick for the whole tab. ``inFlight`` keeps ticks
     from overlapping and is cleared however the poll ends, so a failed poll never stops
     polling. ``refreshing`` counts each panel's Dash callbacks on their way: a panel is left
     out of the poll until its callback's answer is in (or failed). ``stopped`` holds panels
     the server refused (role) or does not know: they are not asked about again. */
  var POLL_PATH = "/poll";
  var POLL_TIMEOUT_MS = 10000;
  var polling = {inFlight: false, refreshing: {}, stopped: {}};

  function tickedPanel(init) {
    try {
      var body = JSON.parse(init && typeof init.body === "string" ? init.body : "null");
      var input = body && body.inputs && body.inputs[0];
      return input && input.id && input.id.type === "mc-tick" ? input.id.panel : null;
    } catch (error) {
      return null;
    }
  }

  var originalFetch = window.fetch.bind(window);
  window.fetch = function (resource, init) {
    var url = typeof resource === "string" ? resource : (resource && resource.url) || "";
    var promise = originalFetch(resource, init);
    if (url.indexOf("_dash-update-component") === -1) {
      return promise;
    }
    var panel = tickedPanel(init);
    if (panel) {
      polling.refreshing[panel] = (polling.refreshing[panel] || 0) + 1;
    }
    function settled() {
      if (panel) {
        polling.refreshing[panel] -= 1;
      }
    }
    return promise.then(function (response) {
      settled();
      noteAnswer(response.status);
      return response;
    }, function (error) {
      settled();
      noteFailure();
      throw error;
    });
  };

  function firePanels(names) {
    var now = Date.now();
    names.forEach(function (name) {
      window.dash_clientside.set_props({type: "mc-tick", panel: name}, {data: now});
    });
  }

  function sendPoll(body) {
    polling.inFlight = true;
    var controller = new AbortController();
    var timer = window.setTimeout(function () { controller.abort(); }, POLL_TIMEOUT_MS);
    originalFetch(POLL_PATH, {
      method: "POST",
      credentials: "same-origin",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify(body),
      signal: controller.signal
    }).then(function (response) {
      noteAnswer(response.status);
      return response.status === 200 ? response.json() : null;
    }).then(function (answer) {
      if (!answer) { return; }
      (answer.forbidden || []).concat(answer.unknown || []).forEach(function (name) {
        polling.stopped[name] = true;
      });
      firePanels(answer.changed || []);
    }).catch(noteFailure).finally(function () {
      window.clearTimeout(timer);
      polling.inFlight = false;
    });
  }

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    mc: {
      /* At each tick, while the tab is visible and the last poll is answered: one poll with
         the version every panel shows; it sets the tick of each panel with something new. */
      poll: function (nIntervals, visible, versions, tab, state) {
        var clientside = window.dash_clientside;
        if (polling.inFlight || visible === false || !pageVisible()) {
          throw clientside.PreventUpdate;
        }
        var ids = clientside.callback_context.states_list[0] || [];
        var panels = {};
        ids.forEach(function (entry, index) {
          var name = entry.id.panel;
          if (polling.stopped[name] || polling.refreshing[name] > 0) { return; }
          var version = versions[index];
          panels[name] = version === null || version === undefined ? null : String(version);
        });
        if (Object.keys(panels).length > 0) {
          sendPoll({tab: tab, state: state, panels: panels});
        }
        throw clientside.PreventUpdate;  // the ticks are set when the answer is in
      },

      themeFigure: function (figure, theme) {
        if (!figure) {
          return [noUpdate(), noUpdate()];
        }
        var layout = Object.assign({}, figure.layout, {template: TEMPLATES[resolveTheme(theme)]});
        return [Object.assign({}, figure, {layout: layout}), "mc-graph-frame"];
      },

      showDates: function (preset) {
        return preset === "custom" ? "mc-range-dates" : "mc-range-dates d-none";
      },

      pollSchedule: function (value, visible) {
        var ms = parseInt(value, 10);
        freshness.refreshOff = !ms || ms <= 0;
        freshness.hidden = visible === false;
        renderFreshness();
        if (!ms || ms <= 0) {
          return [noUpdate(), true];
        }
        return [ms, visible === false];
      },

      toggleTheme: function (nClicks, theme) {
        return resolveTheme(theme) === "dark" ? "light" : "dark";
      },

      applyTheme: function (theme) {
        var resolved = resolveTheme(theme);
        document.documentElement.setAttribute("data-bs-theme", resolved);
        document.documentElement.setAttribute("data-ag-theme-mode", resolved);
        return resolved === "dark" ? "Switch to the light theme" : "Switch to the dark theme";
      },

      navLinks: function (pathname, search, ids) {
        var params = new URLSearchParams(search || "");
        var kept = new URLSearchParams();
        ["range", "window"].forEach(function (name) {
          if (params.get(name)) { kept.set(name, params.get(name)); }
        });
        var suffix = kept.toString() ? "?" + kept.toString() : "";
        var hrefs = ids.map(function (id) { return id.path + suffix; });
        var classes = ids.map(function (id) {
          var active = id.path === "/" ? pathname === "/" : (pathname || "").indexOf(id.path) === 0;
          return active ? "mc-nav-link active" : "mc-nav-link";
        });
        return [hrefs, classes];
      }
    }
  });

  /* Polling pauses while the tab is hidden and resumes, with an immediate tick, when shown. */
  document.addEventListener("visibilitychange", function () {
    var clientside = window.dash_clientside;
    if (clientside && typeof clientside.set_props === "function") {
      clientside.set_props("mc-visible", {data: pageVisible()});
    }
    freshness.hidden = !pageVisible();
    renderFreshness();
  });

  /* Badge ages keep counting between answers: "cache · 12 s ago" becomes "13 s ago". */
  var seen = new WeakMap();

  function ageText(seconds) {
    if (seconds < 5) { return "just now"; }
    if (seconds < 90) { return Math.floor(seconds) + " s ago"; }
    if (seconds < 5400) { return Math.floor(seconds / 60) + " min ago"; }
    if (seconds < 129600) { return Math.floor(seconds / 3600) + " h ago"; }
    return Math.floor(seconds / 86400) + " d ago";
  }

  function tickAges() {
    var now = Date.now();
    document.querySelectorAll(".mc-age[data-age-s]").forEach(function (element) {
      var raw = element.getAttribute("data-age-s");
      var entry = seen.get(element);
      if (!entry || entry.raw !== raw) {
        entry = {raw: raw, base: parseFloat(raw) || 0, since: now};
        seen.set(element, entry);
      }
      var text = ageText(entry.base + (now - entry.since) / 1000);
      if (element.getAttribute("data-age") !== text) {
        element.setAttribute("data-age", text);
      }
    });
  }

  function renderFreshness() {
    var element = document.getElementById("mc-freshness");
    if (!element) { return; }
    var now = Date.now();
    var since = freshness.answeredAt === null ? null
      : "updated " + ageText((now - freshness.answeredAt) / 1000);
    var state, text;
    if (freshness.failedAt !== null || navigator.onLine === false) {
      state = "offline";
      text = "Offline" + (since ? " \u00b7 " + since : "");
    } else if (freshness.refreshOff) {
      state = "off";
      text = "Refresh off" + (since ? " \u00b7 " + since : "");
    } else if (freshness.hidden || !pageVisible()) {
      state = "paused";
      text = "Paused" + (since ? " \u00b7 " + since : "");
    } else {
      state = "live";
      text = since ? since.charAt(0).toUpperCase() + since.slice(1) : "Connecting\u2026";
    }
    var label = element.querySelector(".mc-freshness-text");
    if (element.getAttribute("data-state") !== state) {
      element.setAttribute("data-state", state);
    }
    if (label && label.textContent !== text) {
      label.textContent = text;
    }
  }

  window.addEventListener("online", renderFreshness);
  window.addEventListener("offline", renderFreshness);

  window.setInterval(function () {
    tickAges();
    renderFreshness();
  }, 1000);
})();
