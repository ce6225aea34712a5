// Raqib moderators' queue. No framework, no inline script (the page's CSP forbids it), and every
// piece of comment text goes into the DOM through textContent or text nodes, never parsed as HTML.
(function () {
  'use strict';

  var body = document.body;
  var root = body.dataset.root || '';
  var STRINGS = JSON.parse(document.getElementById('raqib-strings').textContent);
  var lang = document.documentElement.lang === 'en' ? 'en' : 'ar';
  var LANG_COOKIE = 'raqib_lang';
  var LANG_KEY = 'raqib.lang';

  function numberLocale() {
    // Western digits in both languages: they match the numbers typed into the score filters.
    return lang === 'ar' ? 'ar-u-nu-latn' : 'en';
  }

  // A sentence that counts something is stored as one form per CLDR plural category of its
  // language (Arabic needs zero, one, two, few, many and other; English one and other), and the
  // count {n} picks the form: "1 comments" is never printed.
  var pluralRules = {};

  function pluralForm(forms, language, count) {
    if (typeof count !== 'number') return forms.other;
    var rules = pluralRules[language] || (pluralRules[language] = new Intl.PluralRules(language));
    var form = forms[rules.select(count)];
    return form !== undefined ? form : forms.other;
  }

  function t(key, vars) {
    var language = STRINGS[lang] ? lang : 'ar';
    if (STRINGS[language][key] === undefined) language = 'en';
    var text = STRINGS[language][key];
    if (text === undefined) return key;
    if (typeof text === 'object') text = pluralForm(text, language, vars ? vars.n : undefined);
    if (vars) {
      Object.keys(vars).forEach(function (name) {
        var value = vars[name];
        var shown = typeof value === 'number' ? new Intl.NumberFormat(numberLocale()).format(value) : String(value);
        text = text.split('{' + name + '}').join(shown);
      });
    }
    return text;
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  // --- language -------------------------------------------------------------------------------

  function translateStatic() {
    document.querySelectorAll('[data-i18n]').forEach(function (node) {
      var key = node.getAttribute('data-i18n');
      if (key) node.textContent = t(key);
    });
  }

  function setLanguage(next, rerender) {
    lang = next === 'en' ? 'en' : 'ar';
    document.documentElement.lang = lang;
    document.documentElement.dir = lang === 'ar' ? 'rtl' : 'ltr';
    document.cookie = LANG_COOKIE + '=' + lang + '; Path=/; Max-Age=31536000; SameSite=Strict' +
      (location.protocol === 'https:' ? '; Secure' : '');
    try { localStorage.setItem(LANG_KEY, lang); } catch (e) { /* storage may be disabled */ }
    var switcher = document.getElementById('lang-switch');
    if (switcher) {
      var url = new URL(switcher.href, location.href);
      url.searchParams.set('lang', lang === 'ar' ? 'en' : 'ar');
      switcher.href = url.pathname + url.search;
    }
    translateStatic();
    if (rerender) rerender();
  }

  function wireLanguageSwitch(rerender) {
    var switcher = document.getElementById('lang-switch');
    if (!switcher) return;
    switcher.addEventListener('click', function (event) {
      event.preventDefault();
      setLanguage(lang === 'ar' ? 'en' : 'ar', rerender);
    });
  }

  if (body.dataset.page === 'login') {
    wireLanguageSwitch(null);
    return;
  }

  // --- queue page -----------------------------------------------------------------------------

  var csrf = document.querySelector('meta[name="raqib-csrf"]').getAttribute('content');
  var list = document.getElementById('items');
  var statusLine = document.getElementById('status');
  var countLine = document.getElementById('count');
  var emptyLine = document.getElementById('empty');
  var moreButton = document.getElementById('more');
  var undoButton = document.getElementById('undo');
  var filterForm = document.getElementById('filters');
  var importForm = document.getElementById('import-form');

  var state = {
    items: [],
    selected: 0,
    hasMore: false,
    busy: false,
    undo: [],
    labels: ['on_topic', 'off_topic', 'spam', 'abusive'],
    sites: [],
    status: null
  };

  var DECISION_KEYS = { a: 'approve', s: 'spam', o: 'off_topic', b: 'abusive' };
  var DECISIONS = ['approve', 'spam', 'off_topic', 'abusive'];
  var DECISION_SHORTCUT = { approve: 'a', spam: 's', off_topic: 'o', abusive: 'b' };
  // The model explains itself in English; the reasons it words the same way every time are
  // translated, the rest (n-grams aside) are shown as they come.
  var SIGNAL_KEYS = {
    'contains a link': 'reason_link',
    'contains a phone number': 'reason_phone',
    'contains an e-mail address': 'reason_email',
    'comment is English/Latin-script, article is Arabic': 'context_latin_arabic',
    'comment is Arabic, article is English/Latin-script': 'context_arabic_latin'
  };
  var MASK_KEYS = { '<a link>': 'mask_link', '<a phone number>': 'mask_phone', '<an e-mail address>': 'mask_email' };

  function percent(value) {
    return new Intl.NumberFormat(numberLocale(), { style: 'percent', maximumFractionDigits: 0 }).format(value);
  }

  function when(iso) {
    var date = new Date(iso);
    if (isNaN(date.getTime())) return iso;
    return new Intl.DateTimeFormat(numberLocale(), { dateStyle: 'medium', timeStyle: 'short' }).format(date);
  }

  function labelName(label) {
    var key = 'label_' + label;
    return (STRINGS[lang] && STRINGS[lang][key]) ? t(key) : label;
  }

  function setStatus(key, vars, isError) {
    state.status = key ? { key: key, vars: vars || null, error: !!isError } : null;
    renderStatus();
  }

  function renderStatus() {
    var s = state.status;
    statusLine.textContent = s ? t(s.key, s.vars ? resolveVars(s.vars) : null) : '';
    statusLine.classList.toggle('error', !!(s && s.error));
  }

  function resolveVars(vars) {
    // A label given as {labelKey: ...} is translated at render time, so a language switch follows.
    var out = {};
    Object.keys(vars).forEach(function (name) {
      var value = vars[name];
      out[name] = value && value.labelKey ? labelName(value.labelKey) : value;
    });
    return out;
  }

  // --- talking to the server ------------------------------------------------------------------

  function api(method, path, payload) {
    var headers = { 'Accept': 'application/json', 'X-Raqib-CSRF': csrf };
    var options = { method: method, headers: headers, credentials: 'same-origin' };
    if (payload instanceof FormData) {
      options.body = payload;
    } else if (payload !== undefined) {
      headers['Content-Type'] = 'application/json';
      options.body = JSON.stringify(payload);
    }
    return fetch(root + path, options).then(function (response) {
      return response.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        if (response.status === 401) {
          setStatus('session_expired', null, true);
          setTimeout(function () { location.assign(root + '/queue/login'); }, 1500);
        }
        return { ok: response.ok, status: response.status, data: data };
      });
    });
  }

  function errorMessage(result) {
    var error = result.data && result.data.error;
    return error ? (error.message || error.code) : ('HTTP ' + result.status);
  }

  // --- filters --------------------------------------------------------------------------------

  function readFilters() {
    var data = new FormData(filterForm);
    var params = new URLSearchParams();
    // Until the first answer brings the site and label options, the values come from the URL.
    var site = state.wantedSite !== undefined ? state.wantedSite : data.get('site');
    if (site !== null && site !== '*') params.set('site', site);
    if (state.wantedLabel !== undefined) data.set('label', state.wantedLabel);
    ['action', 'label', 'min_score', 'max_score'].forEach(function (name) {
      var value = data.get(name);
      if (value !== null && value !== '') params.set(name, value);
    });
    params.set('order', data.get('order') || 'risk');
    return params;
  }

  function restoreFilters() {
    var params = new URLSearchParams(location.search);
    ['action', 'min_score', 'max_score', 'order'].forEach(function (name) {
      if (params.has(name)) filterForm.elements[name].value = params.get(name);
    });
    // Site and label options arrive with the first page of items; remember what to select.
    state.wantedSite = params.has('site') ? params.get('site') : '*';
    state.wantedLabel = params.get('label') || '';
  }

  function fillSelect(select, values, current, nameOf) {
    while (select.options.length > 1) select.remove(1);
    values.forEach(function (value) {
      var option = el('option', null, nameOf(value));
      option.value = value;
      select.appendChild(option);
    });
    select.value = current;
    if (select.value !== current) select.value = select.options[0].value;
  }

  function renderFilterOptions() {
    var siteSelect = filterForm.elements.site;
    var labelSelect = filterForm.elements.label;
    var siteValue = state.wantedSite !== undefined ? state.wantedSite : siteSelect.value;
    var labelValue = state.wantedLabel !== undefined ? state.wantedLabel : labelSelect.value;
    fillSelect(siteSelect, state.sites.map(function (s) { return s === null ? '' : s; }), siteValue, function (v) {
      return v === '' ? t('no_site') : v;
    });
    fillSelect(labelSelect, state.labels, labelValue, labelName);
    state.wantedSite = undefined;
    state.wantedLabel = undefined;
  }

  // --- loading --------------------------------------------------------------------------------

  function load(reset) {
    var params = readFilters();
    var offset = reset ? 0 : state.items.length;
    params.set('offset', String(offset));
    params.set('limit', '50');
    if (reset) setStatus('loading');
    return api('GET', '/v1/queue/items?' + params.toString()).then(function (result) {
      if (!result.ok) {
        if (result.status !== 401) setStatus('request_failed', { message: errorMessage(result) }, true);
        return;
      }
      var data = result.data;
      state.labels = data.labels;
      state.sites = data.sites;
      renderFilterOptions();
      if (reset) {
        state.items = [];
        state.selected = 0;
      }
      var seen = {};
      state.items.forEach(function (item) { seen[item.audit_id] = true; });
      data.items.forEach(function (item) { if (!seen[item.audit_id]) state.items.push(item); });
      state.hasMore = data.has_more;
      if (reset && state.status && state.status.key === 'loading') setStatus(null);
      render();
    });
  }

  // --- rendering ------------------------------------------------------------------------------

  function highlighted(text, spans) {
    // Spans count code points (Python's str); JavaScript strings are UTF-16, so slice an array of
    // code points rather than the string itself.
    var chars = Array.from(text);
    var block = el('p', 'comment-text');
    block.setAttribute('dir', 'auto');
    var ordered = (spans || []).slice().sort(function (x, y) { return x.begin - y.begin; });
    var at = 0;
    ordered.forEach(function (span) {
      var begin = Math.max(at, Math.min(span.begin, chars.length));
      var end = Math.max(begin, Math.min(span.end, chars.length));
      if (end <= begin) return;
      if (begin > at) block.appendChild(document.createTextNode(chars.slice(at, begin).join('')));
      var mark = el('mark', null, chars.slice(begin, end).join(''));
      mark.title = percent(span.score);
      block.appendChild(mark);
      at = end;
    });
    if (at < chars.length) block.appendChild(document.createTextNode(chars.slice(at).join('')));
    return block;
  }

  function reasonNode(reason) {
    var li = el('li', 'reason reason-' + reason.kind);
    var match = reason.kind === 'ngram' && /^'([\s\S]*)' points to (\w+)$/.exec(reason.detail);
    if (match) {
      var gram = el('bdi', 'gram', MASK_KEYS[match[1]] ? t(MASK_KEYS[match[1]]) : match[1]);
      li.appendChild(gram);
      li.appendChild(document.createTextNode(' ' + t('points_to') + ' ' + labelName(match[2])));
    } else if (SIGNAL_KEYS[reason.detail]) {
      li.textContent = t(SIGNAL_KEYS[reason.detail]);
    } else {
      var detail = el('bdi', null, reason.detail);
      li.appendChild(detail);
    }
    return li;
  }

  function itemNode(item, index) {
    var li = el('li', 'item');
    li.tabIndex = -1;
    li.dataset.index = String(index);
    li.dataset.commentId = item.comment_id;
    li.dataset.action = item.action;

    var head = el('div', 'item-head');
    var article = el('span', 'article');
    if (item.article && item.article.title && item.article.url && /^https?:\/\//i.test(item.article.url)) {
      var link = el('a', null, item.article.title);
      link.href = item.article.url;
      link.rel = 'noopener noreferrer';
      link.target = '_blank';
      link.setAttribute('dir', 'auto');
      article.appendChild(link);
    } else if (item.article && item.article.title) {
      var title = el('span', null, item.article.title);
      title.setAttribute('dir', 'auto');
      article.appendChild(title);
    } else {
      article.appendChild(el('span', 'muted', item.article && item.article.id
        ? t('article') + ' ' + item.article.id : t('unknown_article')));
    }
    head.appendChild(article);
    var meta = el('span', 'meta');
    if (item.site) meta.appendChild(el('bdi', 'site', item.site));
    meta.appendChild(el('bdi', 'comment-id', '#' + item.comment_id));
    meta.appendChild(el('time', null, when(item.created_at)));
    head.appendChild(meta);
    li.appendChild(head);

    var comment = el('blockquote', 'comment');
    comment.setAttribute('dir', 'auto');
    comment.appendChild(highlighted(item.text, item.spans));
    li.appendChild(comment);

    var facts = el('div', 'facts');
    var shownLabel = item.decided_label || item.label;
    var labelBadge = el('span', 'badge label label-' + shownLabel, labelName(shownLabel));
    labelBadge.title = t('model_label');
    facts.appendChild(labelBadge);
    var actionBadge = el('span', 'badge action action-' + item.action, t('action_' + item.action));
    actionBadge.title = t('model_action');
    facts.appendChild(actionBadge);
    facts.appendChild(el('span', 'risk', t('risk') + ' ' + percent(item.risk)));
    var scores = el('ul', 'scores');
    scores.setAttribute('aria-label', t('scores'));
    Object.keys(item.scores).sort(function (x, y) { return item.scores[y] - item.scores[x]; })
      .forEach(function (label) {
        var score = el('li', 'score');
        score.appendChild(el('span', 'score-name', labelName(label)));
        var bar = el('span', 'bar');
        var fill = el('span', 'fill label-' + label);
        // A width in steps of 5 % via classes: the CSP forbids inline style attributes.
        fill.classList.add('w' + Math.round(item.scores[label] * 20) * 5);
        bar.appendChild(fill);
        score.appendChild(bar);
        score.appendChild(el('span', 'score-value', percent(item.scores[label])));
        scores.appendChild(score);
      });
    facts.appendChild(scores);
    li.appendChild(facts);

    var reasons = el('ul', 'reasons');
    reasons.setAttribute('aria-label', t('reasons'));
    item.reasons.forEach(function (reason) { reasons.appendChild(reasonNode(reason)); });
    if (!item.reasons.length) reasons.appendChild(el('li', 'muted', t('no_reasons')));
    li.appendChild(reasons);

    var foot = el('div', 'item-foot');
    var buttons = el('div', 'decide');
    DECISIONS.forEach(function (decision) {
      var button = el('button', 'decide-' + decision);
      button.type = 'button';
      button.appendChild(el('span', null, t('decide_' + decision)));
      button.appendChild(el('kbd', null, DECISION_SHORTCUT[decision]));
      button.addEventListener('click', function (event) {
        event.stopPropagation();
        select(state.items.indexOf(item));
        decide(decision);
      });
      buttons.appendChild(button);
    });
    foot.appendChild(buttons);
    var model = el('span', 'model muted');
    model.appendChild(document.createTextNode(t('model') + ' '));
    model.appendChild(el('bdi', null, item.model.version));
    model.appendChild(document.createTextNode(' · ' + t('source') + ' '));
    model.appendChild(el('bdi', null, item.source));
    foot.appendChild(model);
    if (item.explained_by && item.explained_by.version !== item.model.version) {
      foot.appendChild(el('span', 'muted', t('highlights_from', { version: item.explained_by.version })));
    }
    li.appendChild(foot);

    li.addEventListener('click', function () { select(state.items.indexOf(item)); });
    return li;
  }

  function render() {
    while (list.firstChild) list.removeChild(list.firstChild);
    state.items.forEach(function (item, index) { list.appendChild(itemNode(item, index)); });
    emptyLine.hidden = state.items.length > 0;
    moreButton.hidden = !state.hasMore;
    countLine.textContent = t('shown', { n: state.items.length });
    undoButton.hidden = state.undo.length === 0;
    if (state.selected >= state.items.length) state.selected = Math.max(0, state.items.length - 1);
    markSelected(false);
  }

  function markSelected(scroll) {
    Array.prototype.forEach.call(list.children, function (node, index) {
      var on = index === state.selected;
      node.classList.toggle('selected', on);
      if (on) node.setAttribute('aria-current', 'true'); else node.removeAttribute('aria-current');
      if (on && scroll) {
        node.focus({ preventScroll: true });
        node.scrollIntoView({ block: 'nearest' });
      }
    });
  }

  function select(index) {
    if (index < 0 || index >= state.items.length) return;
    state.selected = index;
    markSelected(true);
  }

  // --- deciding -------------------------------------------------------------------------------

  function removeItem(item) {
    var index = state.items.indexOf(item);
    if (index < 0) return -1;
    state.items.splice(index, 1);
    if (state.selected > index || state.selected >= state.items.length) {
      state.selected = Math.max(0, Math.min(state.selected, state.items.length - 1));
    }
    render();
    markSelected(true);
    if (state.items.length < 5 && state.hasMore) load(false);
    return index;
  }

  function decide(decision) {
    var item = state.items[state.selected];
    if (!item || state.busy) return;
    state.busy = true;
    api('POST', '/v1/queue/decisions', { audit_id: item.audit_id, decision: decision }).then(function (result) {
      if (result.ok) {
        state.undo.push({ decisionId: result.data.decision_id, item: item, index: state.items.indexOf(item) });
        removeItem(item);
        setStatus('recorded', { label: { labelKey: result.data.label } });
      } else if (result.status === 409) {
        removeItem(item);
        setStatus('already_decided', null, true);
      } else if (result.status !== 401) {
        setStatus('request_failed', { message: errorMessage(result) }, true);
      }
    }).catch(function (error) {
      setStatus('request_failed', { message: String(error) }, true);
    }).then(function () { state.busy = false; });
  }

  function undo() {
    var last = state.undo[state.undo.length - 1];
    if (!last) { setStatus('nothing_to_undo'); return; }
    if (state.busy) return;
    state.busy = true;
    api('POST', '/v1/queue/undo', { decision_id: last.decisionId }).then(function (result) {
      if (result.ok || result.status === 409) state.undo.pop();
      undoButton.hidden = state.undo.length === 0;
      if (result.ok && result.data.pending) {
        var at = Math.min(Math.max(last.index, 0), state.items.length);
        state.items.splice(at, 0, last.item);
        state.selected = at;
        render();
        markSelected(true);
        setStatus('undone');
      } else if (result.ok) {
        setStatus('already_decided', null, true);
      } else if (result.status !== 401) {
        setStatus('request_failed', { message: errorMessage(result) }, true);
      }
    }).catch(function (error) {
      setStatus('request_failed', { message: String(error) }, true);
    }).then(function () { state.busy = false; });
  }

  // --- keyboard -------------------------------------------------------------------------------

  function shortcutOf(event) {
    // The letter typed, else the physical key: with an Arabic layout "s" types "س", and the
    // shortcuts still have to work.
    if (event.key && event.key.length === 1 && /[a-z]/i.test(event.key)) return event.key.toLowerCase();
    var match = /^Key([A-Z])$/.exec(event.code || '');
    return match ? match[1].toLowerCase() : null;
  }

  document.addEventListener('keydown', function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    var target = event.target;
    if (target && (target.isContentEditable || /^(INPUT|SELECT|TEXTAREA)$/.test(target.tagName))) return;
    var key = shortcutOf(event);
    if (!key) return;
    if (key === 'j') select(Math.min(state.selected + 1, state.items.length - 1));
    else if (key === 'k') select(Math.max(state.selected - 1, 0));
    else if (DECISION_KEYS[key]) decide(DECISION_KEYS[key]);
    else if (key === 'u') undo();
    else return;
    event.preventDefault();
  });

  // --- forms ----------------------------------------------------------------------------------

  filterForm.addEventListener('submit', function (event) {
    event.preventDefault();
    var params = readFilters();
    history.replaceState(null, '', location.pathname + '?' + params.toString());
    load(true);
  });

  moreButton.addEventListener('click', function () { load(false); });
  undoButton.addEventListener('click', undo);

  importForm.addEventListener('submit', function (event) {
    event.preventDefault();
    var input = importForm.elements.file;
    if (!input.files || !input.files.length) { setStatus('import_choose', null, true); return; }
    var data = new FormData();
    data.append('file', input.files[0]);
    api('POST', '/v1/queue/import', data).then(function (result) {
      if (result.ok) {
        importForm.reset();
        setStatus('imported', { n: result.data.imported });
        load(true).then(function () { setStatus('imported', { n: result.data.imported }); });
      } else if (result.status !== 401) {
        setStatus('request_failed', { message: errorMessage(result) }, true);
      }
    });
  });

  wireLanguageSwitch(function () {
    renderFilterOptions();
    render();
    renderStatus();
    renderShadow();
  });

  var stored = null;
  try { stored = localStorage.getItem(LANG_KEY); } catch (e) { stored = null; }
  if (stored && stored !== lang && document.cookie.indexOf(LANG_COOKIE + '=') < 0) setLanguage(stored, null);

  // Shadow mode: a challenger scored beside the champion; moderators see where they differ.
  var shadowBox = document.getElementById('shadow');
  var shadowData = null;
  function renderShadow() {
    if (!shadowBox) return;
    shadowBox.textContent = '';
    if (!shadowData) { shadowBox.hidden = true; return; }
    shadowBox.hidden = false;
    var name = shadowData.name + ' v' + shadowData.version;
    if (!shadowData.loaded) {
      shadowBox.appendChild(el('p', 'shadow-summary', t('shadow_not_loaded', { shadow: name, error: shadowData.error || '' })));
      return;
    }
    shadowBox.appendChild(el('p', 'shadow-summary', t('shadow_summary', {
      shadow: name,
      champion: 'v' + shadowData.champion_version,
      rate: shadowData.agreement_rate === null ? '—' : percent(shadowData.agreement_rate),
      n: shadowData.compared
    })));
    if (!shadowData.disagreements.length) return;
    shadowBox.appendChild(el('h2', 'shadow-title', t('shadow_disagreements')));
    var list = el('ul', 'shadow-list');
    shadowData.disagreements.forEach(function (d) {
      list.appendChild(el('li', null, t('shadow_row', {
        id: d.comment_id,
        champion_label: labelName(d.champion.label), champion_action: t('action_' + d.champion.action),
        shadow_label: labelName(d.shadow.label), shadow_action: t('action_' + d.shadow.action)
      })));
    });
    shadowBox.appendChild(list);
  }
  function loadShadow() {
    return api('GET', '/v1/queue/shadow').then(function (result) {
      if (!result.ok) return;
      shadowData = result.data.shadow;
      if (shadowData) shadowData.champion_version = result.data.champion ? result.data.champion.version : '?';
      renderShadow();
    });
  }

  restoreFilters();
  load(true).then(loadShadow);
})();
