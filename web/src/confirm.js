// A modal confirmation that names the change; Escape or Cancel leaves everything as it was.

import { h } from './dom.js';
import { t } from './i18n.js';

/** Ask; resolves to the values of the dialog's inputs (an object), or null when cancelled. */
export function confirmChange(text, inputs = []) {
  return new Promise((resolve) => {
    const ok = h('button', { type: 'submit', value: 'ok' }, t('confirm'));
    const cancel = h('button', { type: 'button', class: 'secondary' }, t('cancel'));
    const form = h('form', { method: 'dialog' }, h('p', { id: 'confirm-text' }, text), ...inputs,
      h('div', { class: 'buttons' }, ok, cancel));
    const dialog = h('dialog', { 'aria-labelledby': 'confirm-text', class: 'confirm' }, form);
    const opener = document.activeElement;
    let answered = false;
    const finish = (value) => {
      if (answered) return;
      answered = true;
      dialog.close();
      dialog.remove();
      if (opener instanceof HTMLElement) opener.focus();
      resolve(value);
    };
    cancel.addEventListener('click', () => finish(null));
    dialog.addEventListener('cancel', (event) => { event.preventDefault(); finish(null); });
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      finish(Object.fromEntries(new FormData(form).entries()));
    });
    document.body.append(dialog);
    dialog.showModal();
    (inputs.length ? form.querySelector('input,select') : ok).focus();
  });
}
