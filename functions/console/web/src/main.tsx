import { render } from 'preact';
import { App } from './shell/App';
import { locale } from './i18n';
import './styles.css';

document.documentElement.lang = locale.get();
render(<App />, document.getElementById('app')!);
