/* Offline queue of the relays' form: reports the intake could not take are kept in this
 * browser (localStorage, per login) and re-sent, with the same id, when the connection is
 * back. The intake answers a re-send of an id with the same filled-in fields, so the router
 * drops any copy: a report sent twice is counted once. */
"use strict";

window.RelayQueue = (function () {
  function RelayQueue(login, send) {
    this.key = "veille.relais.queue." + login;
    this.send = send;          // async (entry) -> {done: bool, result, error}
    this.sending = false;
    this.listeners = [];
  }

  RelayQueue.prototype.entries = function () {
    try { return JSON.parse(localStorage.getItem(this.key) || "[]"); } catch (e) { return []; }
  };

  RelayQueue.prototype.save = function (entries) {
    localStorage.setItem(this.key, JSON.stringify(entries));
    this.listeners.forEach(function (fn) { fn(entries.length); });
  };

  RelayQueue.prototype.onChange = function (fn) { this.listeners.push(fn); };

  RelayQueue.prototype.add = function (entry) {
    var entries = this.entries().filter(function (e) { return e.id !== entry.id; });
    entries.push(entry);
    this.save(entries);
  };

  RelayQueue.prototype.remove = function (id) {
    this.save(this.entries().filter(function (e) { return e.id !== id; }));
  };

  /* Send what is kept, oldest first, one at a time; stops at the first that cannot go yet. */
  RelayQueue.prototype.flush = async function () {
    if (this.sending) { return; }
    this.sending = true;
    try {
      for (const entry of this.entries()) {
        const outcome = await this.send(entry);
        if (!outcome.done) { break; }
        this.remove(entry.id);
      }
    } finally {
      this.sending = false;
    }
  };

  RelayQueue.prototype.start = function (everyMs) {
    var self = this;
    window.addEventListener("online", function () { self.flush(); });
    setInterval(function () { if (self.entries().length) { self.flush(); } }, everyMs);
    this.listeners.forEach(function (fn) { fn(self.entries().length); });
    if (this.entries().length) { this.flush(); }
  };

  return RelayQueue;
})();
