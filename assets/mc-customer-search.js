/* The customer picker searches once typing pauses: each keystroke restarts a timer, and only
   when it runs out is the search text written to the store the server's search listens to. */
(function () {
  "use strict";

  var PAUSE_MS = 300;
  var timers = {};
  var written = {};

  window.dash_clientside = window.dash_clientside || {};
  window.dash_clientside.mc_customer_search = {
    afterPause: function (text) {
      var store = window.dash_clientside.callback_context.outputs_list.id;
      clearTimeout(timers[store]);
      timers[store] = setTimeout(function () {
        if (text === undefined || text === written[store]) {
          return;
        }
        written[store] = text;
        window.dash_clientside.set_props(store, {data: text});
      }, PAUSE_MS);
      return window.dash_clientside.no_update;
    }
  };
})();
